"""The engine: schedules, operation mixes and runners that turn intended send times into sends,
and the generator's measure of itself (``selfmon``).

Knows no protocol: it hands operation indices to a ``loadlab.targets.base.Target``.
May import ``loadlab.targets.base`` (the protocol only), ``loadlab.metrics`` and the shared
``clock``, ``errors`` and ``runloop``; no wire library.
"""
