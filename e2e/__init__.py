"""End-to-end tests and the local cluster harness they run against (not part of `optimus`)."""
