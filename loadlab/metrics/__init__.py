"""HDR latency recording, interval snapshots, hlog and timeline files. Pure data, no printing.

May import ``loadlab.targets.base`` (for ``Outcome``) and nothing else from loadlab.
"""
