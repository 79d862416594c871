"""Steps 4 and 5 of a scheduling round (pure): allocation of PS and worker counts by
marginal gain, placement of tasks on nodes, and the baseline policies behind one interface.
"""
