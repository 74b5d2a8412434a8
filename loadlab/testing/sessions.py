"""A whole ``loadlab run`` session in fake time, around any fake target: no sockets, no sleeping.

``run_fake_session(profile, target_factory, tmp_path)`` wires what ``loadlab.wiring`` and
``loadlab.launch`` wire for a real run (recorder, sink, hlogs, timeline, monitor, ticker), runs the
profile's ramp or fixed phase on a ``FakeClock`` with autojump, and returns the ``Session`` with
everything it measured. Tests of the search, the verdicts and the generator's self-judgement use
it with ``loadlab.testing.fakes`` targets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from loadlab.clock import NS_PER_S, FakeClock
from loadlab.engine.mix import OpMix
from loadlab.engine.selfmon import GeneratorMonitor, ProcessReadings
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import Recorder
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile
from loadlab.progress import NullProgress
from loadlab.session import Rig, Session, SwitchableSink, cancel_quietly
from loadlab.targets.base import Target
from loadlab.wiring import MAX_BACKLOG

FAKE_START_NS = 10 * NS_PER_S
"""Where fake runs start: not zero, so a bug that confuses run time and clock time shows."""


class StillProcess:
    """Generator readings of a process that uses no CPU (the real process is not measured)."""

    def cpu_time_s(self) -> float:
        return 0.0

    def rss_bytes(self) -> int:
        return 0


class BusyProcess:
    """A generator that burns a whole core: its CPU time advances with the (fake) clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def cpu_time_s(self) -> float:
        return self._clock.now_ns() / NS_PER_S

    def rss_bytes(self) -> int:
        return 0


def run_fake_session(
    profile: Profile,
    target_factory: Callable[[FakeClock], Target],
    out_dir: Path,
    *,
    slo_p99_ms: Mapping[str, float],
    readings: Callable[[FakeClock], ProcessReadings] = lambda clock: StillProcess(),
    timeout_s: float = 60.0,
) -> Session:
    """Run ``profile`` (its ramp, or its fixed phase) against the target the factory builds on
    the run's fake clock; every file is written to ``out_dir`` as in a real run."""
    clock = FakeClock(start_ns=FAKE_START_NS)

    async def scenario() -> Session:
        target = target_factory(clock)
        recorder = Recorder(target.name, target.op_names, start_ns=clock.now_ns())
        sink = SwitchableSink(recorder)
        await target.open(sink)
        rig = Rig(
            target=target,
            recorder=recorder,
            sink=sink,
            address="fake",
            slo_p99_ms=dict(slo_p99_ms),
            hlogs=TargetHlogs(out_dir, target.name, start_time_epoch_s=0.0),
            max_backlog=MAX_BACKLOG,
        )
        timeline = TimelineWriter(out_dir / "timeline.csv", [rig.name], {rig.name: target.op_names})
        session = Session(
            profile=profile,
            clock=clock,
            rigs=[rig],
            timeline=timeline,
            out_dir=out_dir,
            progress=NullProgress(),
            monitor=GeneratorMonitor(clock, readings(clock)),
            start_ns=clock.now_ns(),
            interval_ns=NS_PER_S,
            mixes={rig.name: OpMix([1.0] * len(target.op_names), seed=1)},
        )
        ticker = asyncio.ensure_future(session.tick_forever())
        try:
            if profile.traffic.ramp is not None:
                await session.ramp(rig)
            else:
                await session.fixed([rig])
        finally:
            await cancel_quietly(ticker)
            await target.close()
            session.rotate_all(clock.now_ns())
            rig.hlogs.close()
            timeline.close()
        return session

    return asyncio.run(asyncio.wait_for(clock.run(scenario()), timeout=timeout_s))
