"""Whole runs in fake time against servers that lie: the verdict never passes a broken server.

Session + runners + recorder + analysis + findings, with a FakeClock and a scripted fake server
(N slots, a service time, and an outcome that may change with time: 500s, 429s, resets, or no
answer at all). No sockets, no sleeping; the real-socket versions live in tests/acceptance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadlab.analysis.findings import FindingKind
from loadlab.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SLO_FAILED
from loadlab.launch_mix import _outcomes, judge
from loadlab.metrics.stats import WindowStats
from loadlab.profile import validate_profile
from loadlab.summary import RunVerdict
from loadlab.targets.base import Outcome
from loadlab.testing.fakes import SILENT, Behaviour, ScriptedServer
from loadlab.testing.sessions import FAKE_START_NS, run_fake_session


class StillProcess:
    def cpu_time_s(self) -> float:
        return 0.0

    def rss_bytes(self) -> int:
        return 0


def run(tmp_path: Path, behaviour: Behaviour, load: dict[str, Any], **server: int) -> RunVerdict:
    """Run ``load`` against a scripted server in fake time; return the run's verdict."""
    profile = validate_profile(
        {
            "name": "fake",
            "api": {"mix": [{"name": "get", "path": "/get", "slo_p99_ms": 200}]},
            "load": load,
        }
    )
    session = run_fake_session(
        profile,
        lambda clock: ScriptedServer(clock, behaviour, start_ns=FAKE_START_NS, **server),
        tmp_path,
        slo_p99_ms={"get": 200.0},
    )
    return judge(session, complete=True)


RAMP = {
    "arrival": "constant",
    "ramp": {"start_per_s": 25, "factor": 2, "max_per_s": 1600, "step_s": 4, "warmup_s": 1},
}
FIXED = {"arrival": "constant", "rate_per_s": 50, "duration_s": 30}


def always(outcome: Outcome | None) -> Behaviour:
    return lambda t_s: outcome


def after(good_for_s: float, outcome: Outcome | None) -> Behaviour:
    return lambda t_s: Outcome.OK if t_s < good_for_s else outcome


HOSTILE = [
    pytest.param(Outcome.SERVER_ERROR, "5xx", id="500"),
    pytest.param(Outcome.THROTTLED, "429", id="429"),
    pytest.param(Outcome.CONN_ERROR, "conn_error", id="reset"),
    pytest.param(Outcome.MALFORMED, "malformed", id="garbage"),
    pytest.param(SILENT, "no_answer", id="silence"),
]


@pytest.mark.parametrize(("outcome", "label"), HOSTILE)
def test_a_ramp_against_a_server_broken_from_the_start_fails_at_the_lowest_load(
    tmp_path: Path, outcome: Outcome | None, label: str
) -> None:
    verdict = run(tmp_path, always(outcome), RAMP)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.FAILED_AT_LOWEST_LOAD, finding.line
    assert finding.dominant_outcome == label
    assert "lowest offered load, 25/s" in finding.line
    assert verdict.exit_code == EXIT_SLO_FAILED
    assert not verdict.slo.passed


@pytest.mark.parametrize(("outcome", "label"), HOSTILE)
def test_a_ramp_against_a_server_that_breaks_after_a_good_start_says_it_stopped_serving(
    tmp_path: Path, outcome: Outcome | None, label: str
) -> None:
    # Capacity 200/s: steps at 25, 50 and 100/s pass (4 s each), then it breaks at 12 s.
    verdict = run(tmp_path, after(12.5, outcome), RAMP)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.STOPPED_SERVING, finding.line
    assert finding.dominant_outcome == label
    assert verdict.knees["api"] is None
    assert verdict.exit_code == EXIT_SLO_FAILED


@pytest.mark.parametrize(("outcome", "label"), HOSTILE)
def test_a_fixed_run_against_a_server_that_breaks_ends_early_and_says_so(
    tmp_path: Path, outcome: Outcome | None, label: str
) -> None:
    verdict = run(tmp_path, after(5, outcome), FIXED)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.STOPPED_SERVING, finding.line
    assert "stopped serving" in finding.line
    assert verdict.exit_code == EXIT_SLO_FAILED


@pytest.mark.parametrize(("outcome", "label"), HOSTILE)
def test_a_fixed_run_against_a_server_broken_from_the_start_never_passes(
    tmp_path: Path, outcome: Outcome | None, label: str
) -> None:
    verdict = run(tmp_path, always(outcome), FIXED)
    (finding,) = verdict.findings
    assert not finding.passed, finding.line
    assert verdict.exit_code == EXIT_SLO_FAILED


def test_a_healthy_server_has_a_confirmed_knee_and_passes(tmp_path: Path) -> None:
    verdict = run(tmp_path, always(Outcome.OK), RAMP)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.KNEE, finding.line
    assert finding.knee is not None
    assert 180 <= finding.knee.offered <= 210
    assert verdict.exit_code == EXIT_OK
    assert verdict.slo.passed


def test_a_server_that_degrades_with_time_has_no_knee(tmp_path: Path) -> None:
    # Healthy through the search (about 50 s), then a quarter of requests succeed: the knee's
    # re-run collapses, so the knee found earlier is not the server's capacity.
    def degrading(t_s: float) -> Outcome:
        if t_s < 50:
            return Outcome.OK
        return Outcome.OK if int(t_s * 1000) % 4 == 0 else Outcome.SERVER_ERROR

    verdict = run(tmp_path, degrading, RAMP)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.STOPPED_SERVING, finding.line
    assert "did not hold" in finding.line
    assert verdict.exit_code == EXIT_SLO_FAILED


def test_a_ramp_that_passes_everywhere_holds_up_to_its_maximum(tmp_path: Path) -> None:
    verdict = run(tmp_path, always(Outcome.OK), RAMP, slots=400)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.HELD, finding.line
    assert "up to 1,600/s" in finding.line
    assert verdict.exit_code == EXIT_OK


def test_a_healthy_fixed_run_passes(tmp_path: Path) -> None:
    verdict = run(tmp_path, always(Outcome.OK), FIXED)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.HELD, finding.line
    assert verdict.exit_code == EXIT_OK


def test_exit_codes_rank_a_server_failure_over_an_inconclusive_target() -> None:
    from loadlab.analysis.findings import Finding, exit_code

    failed = Finding("api", FindingKind.STOPPED_SERVING, "x")
    limited = Finding("dns", FindingKind.GENERATOR_LIMITED, "y")
    held = Finding("dns", FindingKind.HELD, "z")
    assert exit_code([failed, limited]) == EXIT_SLO_FAILED
    assert exit_code([held, limited]) == EXIT_INCONCLUSIVE
    assert exit_code([held]) == EXIT_OK
    assert exit_code([]) == EXIT_INCONCLUSIVE


CLOSED = {"mode": "closed", "concurrency": 8, "duration_s": 20}


def test_a_closed_loop_against_a_healthy_server_holds(tmp_path: Path) -> None:
    verdict = run(tmp_path, always(Outcome.OK), CLOSED)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.HELD, finding.line
    assert verdict.exit_code == EXIT_OK


def test_a_closed_loop_against_a_server_that_breaks_ends_early_and_says_so(tmp_path: Path) -> None:
    verdict = run(tmp_path, after(5, Outcome.SERVER_ERROR), CLOSED)
    (finding,) = verdict.findings
    assert finding.kind is FindingKind.STOPPED_SERVING, finding.line
    assert finding.dominant_outcome == "5xx"
    assert verdict.exit_code == EXIT_SLO_FAILED


def test_an_interrupted_run_claims_nothing() -> None:
    from loadlab.summary import TargetOutcome, judge_run

    outcomes = [
        TargetOutcome(
            name="api",
            address="fake",
            whole_run=verdict_window_stub(),
            steps=(),
            ramped=False,
            slo_p99_ms={"get": 200.0},
            max_error_rate=0.01,
        )
    ]
    partial = judge_run(outcomes, complete=False)
    (finding,) = partial.findings
    assert finding.kind is FindingKind.INTERRUPTED
    assert not partial.passed
    assert not partial.slo.passed
    assert any(c.name == "run completed" and not c.passed for c in partial.slo.checks)


def verdict_window_stub() -> WindowStats:
    from tests.analysis.synthetic import make_stats

    return make_stats(offered=50)


def test_a_fixed_runs_rates_are_per_second_of_load_not_of_its_drain(tmp_path: Path) -> None:
    """The judged window ends one interval after the load, to count the last answers; the rates
    must still be the load's: 50/s for 30 s is 50/s, not 30/31 of it."""
    profile = validate_profile(
        {
            "name": "fake",
            "api": {"mix": [{"name": "get", "path": "/get", "slo_p99_ms": 200}]},
            "load": FIXED,
        }
    )
    session = run_fake_session(
        profile,
        lambda clock: ScriptedServer(clock, always(Outcome.OK), start_ns=FAKE_START_NS),
        tmp_path,
        slo_p99_ms={"get": 200.0},
    )
    (step,) = session.rigs[0].steps
    assert step.sent == pytest.approx(50.0, rel=0.01)
    assert step.achieved == pytest.approx(50.0, rel=0.01)
    (target,) = _outcomes(session)
    assert target.whole_run.achieved_per_s == pytest.approx(50.0, rel=0.01)
