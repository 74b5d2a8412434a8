"""Pure functions over recorded metrics: step verdicts, the knee, SLO checks.

May import ``loadlab.metrics`` and ``loadlab.targets.base``; never the engine or the wire.
"""
