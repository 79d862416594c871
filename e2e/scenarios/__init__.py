"""The end-to-end scenarios (pytest, marked `e2e`): real processes, kubectl, helm, Prometheus.

conftest.py brings up one stack (e2e.demo.stack) per module; helpers.py drives jobs through
kubectl; checks.py holds the pure invariants the scenarios assert (unit-tested in
tests/demo/).
"""
