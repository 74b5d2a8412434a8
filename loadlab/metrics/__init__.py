"""HDR latency recording, interval snapshots, hlog and timeline files. Pure data, no printing.

May import ``loadlab.targets.base`` (for ``Outcome``) and the shared ``clock``, ``errors`` and
``runloop``; nothing else of loadlab, and no wire library.
"""
