"""Keeping CPython's cyclic garbage collector from stalling thousands of agents' timers.

Measured here at 10,000 kubelets (``bench/agents_scale.py``): with automatic collection (young
threshold raised to 20,000), collections of the older generations paused the event loop for up
to seconds, and the generator's schedule lag p99 was 169-311 ms; collecting the young
generations on the clock instead, once a second, still cost 100 ms a pause. With the collector
off the lag p99 was 12 ms. So during an agent run the collector is off and what little cyclic
garbage the run makes is left to grow, within a bound: everything alive before the run and
after the warm-up is frozen out of the collector's scans, and the rest is collected only when
the generator's memory passes ``RSS_LIMIT_MB``. The histograms, which were nearly all of that
garbage (hundreds of MB a minute), no longer make any (``loadlab.metrics.recorder.unlinked``).
"""

from __future__ import annotations

import gc

RSS_LIMIT_MB = 1024.0
"""Resident memory above which the run's cyclic garbage is collected. Not from a reference: two
thirds of the 1.5 GiB issue 8 allows a 10,000-node run, so a collection comes well before that
bound; at 10,000 kubelets a quick run stays below it without any collection, and each pause it
would cost (a second or two over a heap that size) is one the lag figures show honestly."""


class QuietGc:
    """Use as a context manager around a run; call ``tick`` once per interval with the
    generator's resident memory, and ``settled`` once when the warm-up ends."""

    def __init__(self, *, rss_limit_mb: float = RSS_LIMIT_MB) -> None:
        self._rss_limit_mb = rss_limit_mb
        self._was_enabled = False
        self.collections = 0
        """Collections ``tick`` ran (the bound was passed)."""

    def __enter__(self) -> QuietGc:
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        return self

    def tick(self, rss_mb: float) -> None:
        if rss_mb > self._rss_limit_mb:
            self.collections += 1
            gc.collect()
            self._rss_limit_mb = max(self._rss_limit_mb, rss_mb)  # what lives is not garbage

    def settled(self) -> None:
        """What is alive after the warm-up (connections, watches, caches) lives for the run."""
        gc.collect()
        gc.freeze()

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
