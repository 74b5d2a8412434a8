"""The engine: clocks, schedules and runners that turn intended send times into sends.

Knows no protocol: it hands operation indices to a ``loadlab.targets.base.Target``.
May import ``loadlab.targets.base`` (the protocol only) and ``loadlab.metrics``.
"""
