"""optimus_worker: what runs inside a TrainingJob's pods (PS, workers, all-reduce)."""
