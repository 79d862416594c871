"""Steps 1 and 6 of a scheduling round: the kopf handlers, the snapshot of nodes, pods and
TrainingJobs as typed objects, pure pod/Service builders and the resize protocol. The only
code that imports kopf or kubernetes.
"""
