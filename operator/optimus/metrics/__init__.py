"""Step 2 of a scheduling round and the operator's own telemetry: Prometheus queries that
become observations, and the metrics the operator exports. The only code that talks to
Prometheus.
"""
