"""Example plan inputs for `optimus plan` (data only; a package so that wheels ship them)."""
