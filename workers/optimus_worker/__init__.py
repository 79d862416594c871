"""optimus_worker: what runs inside a TrainingJob's pods (PS, workers, all-reduce).

Put your own model in with a `optimus_worker.task.TrainingTask` (model, optimizer,
dataset, loss) and ``--task package.module:attr``, or use a shipped example (``mlp``,
``cnn``, ``digits``). ``python -m optimus_worker`` runs one pod from the environment of
`optimus_worker.contract`; ``python -m optimus_worker.local`` runs a whole job locally.

Semantics the operator and the user can rely on:

* Global batch. ``OPTIMUS_GLOBAL_BATCH_SIZE`` = M samples per step over all workers; each
  of the w workers takes M/w of them (the first M mod w workers one more). A step's
  gradient is the mean over all M samples whatever w is (each worker weighs its loss by
  its share), so ps-sync and all-reduce compute exactly what single-process training
  with batch M computes, and a resize does not change the loss trajectory.
* Steps. The job's step count k is the number of global batches done; epoch e covers
  ceil(n/M) steps, in the order of a permutation seeded by e (`optimus_worker.data`).
  /status and checkpoints report k. Each worker's steps counter counts the mini-batches
  it computed: k on every worker in ps-sync and all-reduce; in ps-async workers advance
  independently (worker r's i-th push is its share of batch i) and the job's pushes are
  the sum over workers. The PS's steps counter counts updates applied.
* Data accounting. Every worker records which samples it trained on; the records travel
  in the checkpoints, so a job can prove that no sample of an epoch was skipped or
  repeated across resizes (`optimus_worker.data.SampleLedger`).
* Checkpoints (`optimus_worker.checkpoint`): atomic, PS-count independent, written every
  ``OPTIMUS_CHECKPOINT_INTERVAL_STEPS`` steps, at the end, and on ``POST /checkpoint``;
  a new generation resumes from the newest complete one.
* Loss. The training-loss gauge is the mean loss over all samples of the last finished
  epoch (all workers' samples), the same value on every worker.
"""
