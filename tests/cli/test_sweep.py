"""Agent scenarios over cluster sizes: the per-size summary, the exit code, the flags."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadlab.analysis.onset import Breach
from loadlab.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SLO_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
)
from loadlab.launch_sweep import parse_sizes, saturating_size, sweep_exit_code
from loadlab.sweep_verdict import SizeVerdict
from loadlab.testing.hostile import start_hostile_process
from loadlab.testing.ports import closed_tcp_port
from tests.shared_runs import RunResult

SIZE_KEYS = {
    "nodes",
    "passed",
    "knee",
    "api_saturation_at_s",
    "dns_failure_at_s",
    "dns_failure_onset_s",
    "agents",
    "generator",
}


def verdict(
    nodes: int,
    *,
    api: float | None = None,
    dns: float | None = None,
    complete: bool = True,
    limited: bool = False,
    slow: bool = False,
) -> SizeVerdict:
    breach = None
    if api is not None:
        breach = (
            Breach(api, "kubelet: p99 of lease-renew 3,000 ms > SLO 1000 ms", "p99:lease-renew")
            if slow
            else Breach(api, "kubelet: error rate 50% > 1%, all 429", "error_rate", "429")
        )
    return SizeVerdict(
        nodes=nodes,
        complete=complete,
        api=breach,
        dns=Breach(dns, "90 of 100 lookups failed") if dns is not None else None,
        generator_limited=limited,
        agents={},
        generator={"schedule_lag_p99_ms": 500.0 if limited else 1.0},
        duration_s=60.0,
    )


def test_the_saturating_size_is_the_smallest_that_failed() -> None:
    sizes = [verdict(250), verdict(1000, api=40), verdict(4000, api=20, dns=95)]
    assert saturating_size(sizes) == 1000
    assert saturating_size([verdict(250)]) is None
    assert sizes[2].onset_s == 75
    assert "the caches hid it for 75 s" in sizes[2].line()


@pytest.mark.parametrize(
    ("sizes", "stopped_by", "code"),
    [
        pytest.param([verdict(250)], None, EXIT_OK, id="held"),
        pytest.param([verdict(250), verdict(1000, api=40)], None, EXIT_SLO_FAILED, id="saturated"),
        pytest.param(
            [verdict(250), verdict(1000, limited=True)],
            None,
            EXIT_INCONCLUSIVE,
            id="generator-limited",
        ),
        pytest.param([verdict(250)], "SIGINT", EXIT_INTERRUPTED, id="interrupted"),
        pytest.param(
            [verdict(250), verdict(1000, api=40, limited=True)],
            None,
            EXIT_SLO_FAILED,
            id="lagging-generator-but-the-server-answered-429",
        ),
        pytest.param(
            [verdict(250), verdict(1000, api=40, limited=True, slow=True)],
            None,
            EXIT_INCONCLUSIVE,
            id="lagging-generator-and-only-slowness",
        ),
        pytest.param([], None, EXIT_INCONCLUSIVE, id="nothing-run"),
    ],
)
def test_sweep_exit_code(sizes: list[SizeVerdict], stopped_by: str | None, code: int) -> None:
    assert sweep_exit_code(sizes, stopped_by) == code


def test_a_size_too_short_to_show_a_breach_is_inconclusive_never_held() -> None:
    short = dataclasses.replace(verdict(250), steady_s=6.0, needed_s=20.0)
    assert not short.judged
    assert not short.passed
    assert "nothing is claimed" in short.line()
    assert sweep_exit_code([short], None) == EXIT_INCONCLUSIVE


def test_a_generator_limited_size_never_passes() -> None:
    assert not verdict(250, limited=True).passed
    assert "not the server's" in verdict(250, limited=True).line()


@pytest.mark.parametrize("text", ["0", "abc", "250,,1000", "-5", "20001"])
def test_bad_sizes_are_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="--sizes"):
        parse_sizes(text)


def test_sizes_parse_with_separators() -> None:
    assert parse_sizes("250, 1_000,4000") == (250, 1000, 4000)


@pytest.mark.slow
@pytest.mark.realtime
def test_a_small_sweep_against_the_embedded_control_plane_reports_each_size(
    sweep_result: RunResult,
) -> None:
    # The session's shared sweep (tests/shared_runs.py): kubelet-baseline at 20 and 40 nodes.
    result, out = sweep_result, sweep_result.out
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["saturating_size"] is None
    assert [s["nodes"] for s in summary["sizes"]] == [20, 40]
    for size in summary["sizes"]:
        assert set(size) >= SIZE_KEYS, sorted(size)
        assert size["passed"] is True
        kubelets = size["agents"]["kubelet"]
        assert kubelets["agents"] == size["nodes"]
        assert kubelets["ops"]["lease-get"]["outcomes"]["ok"] == size["nodes"]
        assert kubelets["ops"]["pods-watch"]["outcomes"]["ok"] == size["nodes"]
        assert size["agents"]["pod-dns"]["lookups_ok"] > 0
        assert size["generator"]["rss_mb"] > 0
        assert (out / f"size-{size['nodes']}" / "timeline.csv").exists()
        assert (out / f"size-{size['nodes']}" / "kubelet.hlog").exists()
    assert result.stdout.splitlines()[-1].startswith("gate: passed")


def test_sizes_on_a_request_mix_profile_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadlab", "run", "http-knee", "--sizes", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_USAGE
    assert "agent scenario" in result.stderr


def _sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "loadlab", "run", "kubelet-baseline", "--sizes", "10"]
    cmd += [
        "--set",
        "phases.duration_s=8",
        "--set",
        "phases.warmup_s=2",
        "--set",
        "sweep.window_s=2",
    ]
    cmd += ["--set", "agents.kubelet.start_spread_s=1", "--set", "agents.pod_dns.nodes=2"]
    cmd += ["--out", str(tmp_path / "run"), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.realtime
def test_a_sweep_against_nothing_listening_is_unreachable_in_one_line(tmp_path: Path) -> None:
    result = _sweep(tmp_path, "--api", f"http://127.0.0.1:{closed_tcp_port()}")
    assert result.returncode == EXIT_UNREACHABLE, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("workers", ["1", "2"])  # one process, or two workers merged
def test_a_sweep_against_an_api_that_answers_500_and_dns_that_refuses_never_passes(
    tmp_path: Path, workers: str
) -> None:
    with (
        start_hostile_process("http", "status_500") as api,
        start_hostile_process("dns", "refuse") as dns,
    ):
        result = _sweep(
            tmp_path, "--api", api.url, "--dns", dns.addr, "--gate", "--workers", workers
        )
    assert result.returncode == EXIT_SLO_FAILED, result.stdout + result.stderr
    # The gate never passes a lying cluster: it names the size and the check.
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("gate: FAILED - 10 nodes: API saturated at "), last
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (size,) = summary["sizes"]
    assert size["passed"] is False
    assert "5xx" in size["api_saturation_why"]
    assert "refused" in size["dns_failure_why"]
    assert summary["saturating_size"] == 10
    assert "verdict: passed" not in result.stdout
