"""The demo and the end-to-end scenarios' shared machinery (test and demo code, not the operator).

`python -m e2e.demo` (what `make demo` runs) brings up the whole loop on one machine: the
e2e local cluster, a real Prometheus scraping it, and the operator as a subprocess of the
local checkout; it applies the three sample TrainingJobs of e2e/samples/, shows a live table
until they finish, prints a summary and stops everything it started.

The modules, from the edge inwards:
  procs    child processes in their own process groups, stopped by group (no orphans)
  kubectl  the real kubectl against a kubeconfig, returning parsed JSON
  stack    cluster + CRD + Prometheus + operator as one context manager (demo and e2e tests)
  samples  the sample manifests, with their checkpoint volume pointed at a work directory
  table    pure: TrainingJob objects -> rows -> a rich table
  summary  pure: completion times, resizes from events, fit errors, fixed-allocation estimate
"""
