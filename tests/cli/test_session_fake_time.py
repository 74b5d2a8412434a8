"""A whole ramp, in fake time: the session's wiring finds a fake server's known capacity.

Session + OpenLoopRunner + Recorder + the analysis, with a FakeClock and a fake N-slot server:
no sockets, no sleeping, and the result is exact enough to pin the knee to slots/service time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loadlab.analysis.knee import find_knee
from loadlab.clock import NS_PER_MS, NS_PER_S, FakeClock
from loadlab.engine.mix import OpMix
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.metrics.hlog import TargetHlogs, read_hlog
from loadlab.metrics.recorder import Recorder
from loadlab.metrics.timeline import TimelineWriter, read_timeline
from loadlab.profile import validate_profile
from loadlab.progress import NullProgress
from loadlab.session import Rig, Session, SwitchableSink, cancel_quietly
from loadlab.testing.fakes import SlotServerTarget
from loadlab.wiring import MAX_BACKLOG

SLOTS, SERVICE_MS = 4, 20  # capacity 200/s


class StillProcess:
    """Generator readings that do not depend on the real process."""

    def cpu_time_s(self) -> float:
        return 0.0

    def rss_bytes(self) -> int:
        return 0


class BusyProcess:
    """A generator that burns a whole core: CPU time advances with the (fake) clock."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def cpu_time_s(self) -> float:
        return self._clock.now_ns() / NS_PER_S

    def rss_bytes(self) -> int:
        return 0


def run_ramp(tmp_path: Path, busy: bool = False) -> Session:
    profile = validate_profile(
        {
            "name": "fake",
            "api": {
                "mix": [{"name": "a", "path": "/a", "slo_p99_ms": 200}, {"name": "b", "path": "/b"}]
            },
            "load": {
                "arrival": "constant",
                "ramp": {
                    "start_per_s": 25,
                    "factor": 2,
                    "max_per_s": 1600,
                    "step_s": 4,
                    "warmup_s": 1,
                },
            },
        }
    )
    clock = FakeClock(start_ns=10 * NS_PER_S)

    async def scenario() -> Session:
        target = SlotServerTarget(clock, slots=SLOTS, service_ns=SERVICE_MS * NS_PER_MS)
        recorder = Recorder(target.name, target.op_names, start_ns=clock.now_ns())
        sink = SwitchableSink(recorder)
        await target.open(sink)
        rig = Rig(
            target=target,
            recorder=recorder,
            sink=sink,
            address="fake",
            slo_p99_ms={"a": 200.0, "b": 1000.0},
            hlogs=TargetHlogs(tmp_path, target.name, start_time_epoch_s=0.0),
            max_backlog=MAX_BACKLOG,
        )
        timeline = TimelineWriter(
            tmp_path / "timeline.csv", [rig.name], {rig.name: target.op_names}
        )
        session = Session(
            profile=profile,
            clock=clock,
            rigs=[rig],
            timeline=timeline,
            out_dir=tmp_path,
            progress=NullProgress(),
            monitor=GeneratorMonitor(clock, BusyProcess(clock) if busy else StillProcess()),
            start_ns=clock.now_ns(),
            interval_ns=NS_PER_S,
            mixes={rig.name: OpMix([1.0, 1.0], seed=1)},
        )
        ticker = asyncio.ensure_future(session.tick_forever())
        try:
            await session.ramp(rig)
        finally:
            await cancel_quietly(ticker)
            await target.close()
            rig.hlogs.close()
            timeline.close()
        return session

    return asyncio.run(clock.run(scenario()))


def test_ramp_in_fake_time_finds_the_slot_servers_capacity(tmp_path: Path) -> None:
    session = run_ramp(tmp_path)
    rig = session.rigs[0]
    knee = find_knee(rig.steps)
    assert knee is not None, [(v.offered, v.why) for v in rig.steps]
    capacity = SLOTS / (SERVICE_MS / 1000)
    # A step a few percent over capacity can still pass its short window (the queue has not
    # grown past the SLO yet): the method's own resolution, refine_within = 5%.
    assert 0.9 * capacity <= knee.offered <= 1.05 * capacity, [
        (v.offered, v.why) for v in rig.steps
    ]
    assert not any(v.generator_limited for v in rig.steps)
    # Every interval was written as the run went.
    rows = read_timeline(tmp_path / "timeline.csv")
    assert len(rows) >= len(rig.steps) * 3
    assert read_hlog(tmp_path / "fake.hlog")
    assert (tmp_path / "steps.jsonl").read_text().count("\n") == len(rig.steps)


def test_failing_step_while_the_generator_core_is_saturated_is_not_the_servers_knee(
    tmp_path: Path,
) -> None:
    session = run_ramp(tmp_path, busy=True)
    rig = session.rigs[0]
    assert find_knee(rig.steps) is None
    assert rig.generator_limited
    limited = [v for v in rig.steps if v.generator_limited]
    assert limited
    assert "CPU" in limited[0].why
    # Passing steps stay passes: a busy generator that kept up is not an excuse.
    assert any(v.passed for v in rig.steps)
