"""The trace-driven cluster simulator (pure): it runs steps 3-5 with the operator's own
models, allocator and placer over a simulated cluster and job physics.
"""
