"""A whole ramp, in fake time: the session's wiring finds a fake server's known capacity.

Session + OpenLoopRunner + Recorder + the analysis, with a FakeClock and a fake N-slot server:
no sockets, no sleeping, and the result is exact enough to pin the knee to slots/service time.
"""

from __future__ import annotations

from pathlib import Path

from loadlab.analysis.knee import find_knee
from loadlab.clock import NS_PER_MS
from loadlab.metrics.hlog import read_hlog
from loadlab.metrics.timeline import read_timeline
from loadlab.profile import validate_profile
from loadlab.session import Session
from loadlab.testing.fakes import SlotServerTarget
from loadlab.testing.sessions import BusyProcess, StillProcess, run_fake_session

SLOTS, SERVICE_MS = 4, 20  # capacity 200/s


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
    return run_fake_session(
        profile,
        lambda clock: SlotServerTarget(clock, slots=SLOTS, service_ns=SERVICE_MS * NS_PER_MS),
        tmp_path,
        slo_p99_ms={"a": 200.0, "b": 1000.0},
        readings=BusyProcess if busy else lambda clock: StillProcess(),
    )


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
