"""The safety rails of one run, put together: the canary beside the load, the run's own figures
each interval, and one way out (``on_abort``) taken once, whichever rail fires first.

On (``abort.enabled``, default: against a real cluster) they stop the load within two seconds of
a breach: the canary looks once a second and a breach cancels the run at once; the run's own
figures breach after ``abort.sustain_s``. Off, they cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from loadlab.analysis.abort import AbortLimits, AbortRules, IntervalFigures
from loadlab.clock import Clock
from loadlab.cluster.canary import Canary, CanarySettings
from loadlab.cluster.settings import AbortSection
from loadlab.targets.cluster import ClusterAccess

ABORTED = "aborted at"
"""How the reason a rail stopped a run begins (``aborted at 12 s: ...``)."""


def is_abort(stopped_by: str | None) -> bool:
    """Whether a run's stop reason is a rail's (not a signal's or a write error's)."""
    return stopped_by is not None and stopped_by.startswith(ABORTED)


@dataclass
class Abort:
    """Why and when the rails stopped the run (for the summary and the report)."""

    at_s: float
    why: str

    def as_dict(self) -> dict[str, object]:
        return {"at_s": round(self.at_s, 3), "why": self.why}


CREDENTIALS_REFRESH_S = 10.0
"""How often expiring credentials (exec plugins) are checked; they renew a minute before expiry."""


async def keep_credentials_fresh(access: ClusterAccess, clock: Clock) -> None:
    """Renew ``access``'s credentials when they near expiry, until cancelled. A renewal that
    fails (an exec plugin's error) is not fatal here: the requests after it are refused (401),
    which the run's own figures and the rails see and stop the run for."""
    next_ns = clock.now_ns()
    while True:
        next_ns += int(CREDENTIALS_REFRESH_S * 1e9)
        await clock.sleep_until(next_ns)
        with contextlib.suppress(Exception):
            await access.credentials.refresh()


@dataclass
class Rails:
    settings: AbortSection
    access: ClusterAccess
    clock: Clock
    start_ns: int
    on_abort: Callable[[str], None]
    fired: Abort | None = None
    _rules: AbortRules = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self._rules = AbortRules(
            AbortLimits(
                max_error_rate=s.max_error_rate,
                max_429_share=s.max_429_share,
                max_p99_ms=s.max_p99_ms,
                sustain_intervals=max(1, round(s.sustain_s)),
            )
        )

    def start(self) -> None:
        """Start the canary (in the running loop)."""
        auth = self.access.credentials.authorization(None)
        canary = Canary(
            CanarySettings(
                server=self.access.server,
                readyz=self.settings.readyz,
                path=self.settings.canary_path,
                max_ms=self.settings.canary_max_ms,
                ssl=self.access.ssl,
                headers={"Authorization": auth} if auth else None,
                server_hostname=self.access.tls_server_name,
            ),
            self.clock,
            self._fire,
        )
        self._tasks = [
            asyncio.ensure_future(canary.run()),
            asyncio.ensure_future(keep_credentials_fresh(self.access, self.clock)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def observe(self, figures: IntervalFigures) -> None:
        """One interval of the run's own API traffic."""
        why = self._rules.observe(figures)
        if why is not None:
            self._fire(why)

    def _fire(self, why: str) -> None:
        if self.fired is not None:
            return
        self.fired = Abort((self.clock.now_ns() - self.start_ns) / 1e9, why)
        self.on_abort(f"{ABORTED} {self.fired.at_s:,.0f} s: {why}")
