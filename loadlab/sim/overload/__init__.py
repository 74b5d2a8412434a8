"""The overload model: APF, work estimates, memory accounting, and their numbers (parameters).

May import ``loadlab.clock``, ``loadlab.sim.k8s`` and ``loadlab.sim.promtext``; no HTTP, no store.
"""
