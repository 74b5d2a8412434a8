"""Spreading one run over several generator processes (``loadlab run --workers N``).

A *leader* (the ``loadlab run`` process) keeps everything that decides: the interval ticker, the
ramp search, the judging, the files. *Workers* only generate: each opens its own connections to
the targets, runs its segment of every load phase the leader orders, and sends back one interval
snapshot per target per interval (the HdrHistograms an hlog line carries). The leader merges the
workers' snapshots of an interval into one and proceeds exactly as a single process would.

Nothing here assumes the workers share the leader's machine: they connect to the leader over TCP,
their clocks are mapped onto the leader's at hello, and what they send is the interval data an
hlog holds. That is the shape a later Kubernetes Indexed Job needs (worker i = completion index i).
"""
