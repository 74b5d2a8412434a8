"""Pure functions over recorded metrics: step verdicts, the ramp search, the knee, SLOs, findings.

May import ``loadlab.metrics`` and the shared ``clock``, ``errors`` and ``runloop``; never the
engine, the targets (not even ``targets.base``), a wire library or asyncio.
"""
