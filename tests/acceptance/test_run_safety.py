"""End-to-end: a ``loadlab run`` survives signals, a full disk, absurd input and a second run beside
it, and every exit code it documents is one it really produces (issue "Verdicts you can stake a
rollout on"). Every test runs the real CLI in its own process against real servers on loopback.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import loadlab.launch
from loadlab.cli import main
from loadlab.errors import (
    EXIT_ABORTED,
    EXIT_CODES,
    EXIT_INCONCLUSIVE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RESULTS_WRITE,
    EXIT_SLO_FAILED,
    EXIT_TERMINATED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from loadlab.launch_mix import RunOutcome
from loadlab.testing.hostile import start_hostile_process
from loadlab.testing.ports import closed_tcp_port
from tests.cluster import test_cluster_runs as cluster_runs

from .run_helpers import (
    Finished,
    assert_one_clear_line,
    file_lines,
    finish,
    gone_within,
    help_exit_codes,
    is_gone,
    peak_rss_mib,
    read_summary,
    readme_exit_codes,
    run_id_file,
    run_loadlab,
    sim_child,
    start_loadlab,
    tmpfs,
    wait_while_running,
    write_fixed_profile,
)

pytestmark = [pytest.mark.realtime]

README = Path(__file__).resolve().parents[2] / "README.md"

# The shipped http-knee ramp against the embedded sim, with short steps. 100 nodes, not fewer:
# the profile's lease operations address node-0..node-99 (spread: 100), and a smaller sim answers
# half of them 404, failing the very first step.
SIM_RAMP = (
    *("run", "http-knee", "--quiet", "--set", "sim.nodes=100"),
    *("--set", "load.ramp.step_s=2", "--set", "load.ramp.warmup_s=0.5"),
)
# A sim seeding 5,000 nodes x 30 pods (the large cluster) takes about 3 s of one core.
BIG_SIM = ("--set", "sim.nodes=5000", "--set", "sim.pods_per_node=30")
SEEDING_CPU_S = 1.5
"""CPU seconds after which the big sim is seeding: importing loadlab.sim takes well under one."""
START_S = 30.0
"""Bound on a process start-up (Python and aiohttp import in ~1 s; a busy 2-core box is slower)."""
GONE_WITHIN_S = 2.0
"""The issue's bound: the sim is gone this long after loadlab is signalled or killed."""
RUN_S = 60.0
"""Bound on a whole short run (a few seconds of load, drain, summary) on a busy machine."""
SIGNAL_EXIT_S = 3.0
"""The issue's bound: an interrupted run exits this long after its signal, even at 50,000/s."""
DISK_FULL_EXIT_S = 20.0
"""The issue's bound: a 60 s run whose disk fills ends well before its planned duration."""
DISK_FULL_PLANNED_S = 60
PEAK_RSS_MIB = 500.0
"""The issue's bound for 256 connections each answered with a 50 MB body."""
HUGE_BODY_BYTES = 50_000_000


@pytest.fixture(scope="module")
def ok_server() -> Iterator[str]:
    """A fast, always-healthy HTTP server (hostile behaviour ``ok``) in its own process."""
    with start_hostile_process("http", "ok") as server:
        yield server.url


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running when it ends (a failed test) is killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def fixed_profile(
    tmp_path: Path, *, rate_per_s: float, duration_s: float, ops: int = 1, interval_s: float = 1.0
) -> str:
    """A fixed-rate profile of lease GETs in ``tmp_path``; its path as an argument."""
    path = tmp_path / "fixed-short.yaml"
    return str(
        write_fixed_profile(
            path, rate_per_s=rate_per_s, duration_s=duration_s, ops=ops, interval_s=interval_s
        )
    )


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)],
    ids=["sigterm", "sigint"],
)
def test_signal_mid_ramp_writes_a_summary_that_claims_nothing_and_stops_the_sim(
    tmp_path: Path, launched: list[subprocess.Popen[str]], signum: signal.Signals, code: int
) -> None:
    out = tmp_path / "run"
    proc = start_loadlab(*SIM_RAMP, "--out", str(out))
    launched.append(proc)
    sim = sim_child(proc, START_S)
    # Mid-run: the first step has been judged and the ramp goes on.
    wait_while_running(
        proc, lambda: file_lines(out / "steps.jsonl") >= 1, RUN_S, "the first ramp step"
    )
    proc.send_signal(signum)
    signalled = time.monotonic()
    done = finish(proc, RUN_S)
    assert gone_within(sim, GONE_WITHIN_S, since=signalled), f"sim {sim.pid} outlived loadlab"
    assert done.code == code, done.stderr
    assert "Traceback" not in done.stderr
    summary = read_summary(out)
    assert summary["complete"] is False
    assert summary["slo"]["passed"] is False
    assert summary["verdict"]["passed"] is False
    assert summary["exit_code"] == code
    assert summary["verdict"]["exit_code"] == code
    assert summary["stopped_by"] == signum.name


@pytest.mark.slow
def test_sigkill_mid_ramp_takes_the_sim_along(
    tmp_path: Path, launched: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    proc = start_loadlab(*SIM_RAMP, "--out", str(out))
    launched.append(proc)
    sim = sim_child(proc, START_S)
    try:
        wait_while_running(
            proc, lambda: file_lines(out / "timeline.csv") >= 3, RUN_S, "load to be running"
        )
        proc.kill()
        killed = time.monotonic()
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert gone_within(sim, GONE_WITHIN_S, since=killed), f"sim {sim.pid} outlived loadlab"
    finally:
        if not is_gone(sim):  # the failure above, not left behind for the next test
            sim.kill()


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [False, True], ids=["to-loadlab", "to-process-group"])
def test_ctrl_c_while_the_sim_seeds_exits_130_with_one_line_and_no_sim_left(
    tmp_path: Path, launched: list[subprocess.Popen[str]], to_group: bool
) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group (the sim too), ``kill
    -INT`` only loadlab; either way the seeding sim goes and loadlab says so in one line."""
    out = tmp_path / "run"
    proc = start_loadlab(*SIM_RAMP, *BIG_SIM, "--out", str(out), new_session=True)
    launched.append(proc)
    sim = sim_child(proc, START_S)

    def seeding() -> bool:
        try:
            times = sim.cpu_times()
        except psutil.NoSuchProcess:
            return False
        return times.user + times.system >= SEEDING_CPU_S

    try:
        wait_while_running(proc, seeding, START_S, "the sim was seeding 5,000 nodes")
        if to_group:
            # The group loadlab leads (new_session): loadlab and its sim, never this process's.
            group = os.getpgid(proc.pid)
            assert group == proc.pid != os.getpgid(0)
            os.killpg(group, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        done = finish(proc, RUN_S)
        assert gone_within(sim, GONE_WITHIN_S, since=signalled), f"sim {sim.pid} left running"
    finally:
        if not is_gone(sim):
            sim.kill()
    assert done.code == EXIT_INTERRUPTED, done.stderr
    assert "interrupt" in assert_one_clear_line(done.stderr)
    # It was start-up that was interrupted: the run never got as far as its first file.
    assert not (out / "profile.resolved.json").exists()
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_ctrl_c_at_50k_per_s_exits_130_within_3_s_with_a_partial_summary(
    tmp_path: Path, ok_server: str, launched: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=50_000, duration_s=30)
    proc = start_loadlab("run", profile, "--api", ok_server, "--out", str(out), "--quiet")
    launched.append(proc)
    # The header and two interval rows: about 2 s of load at 50,000/s.
    wait_while_running(proc, lambda: file_lines(out / "timeline.csv") >= 3, START_S, "load")
    proc.send_signal(signal.SIGINT)
    done = finish(proc, SIGNAL_EXIT_S)
    assert done.code == EXIT_INTERRUPTED, done.stderr
    assert "Traceback" not in done.stderr
    summary = read_summary(out)
    assert summary["complete"] is False
    assert summary["exit_code"] == EXIT_INTERRUPTED
    assert summary["stopped_by"] == "SIGINT"
    assert summary["verdict"]["passed"] is False
    assert summary["totals"]["requests"] > 0


# -- absurd input -----------------------------------------------------------------------------


def test_a_billion_per_second_is_refused_in_one_line_naming_the_field(
    tmp_path: Path, ok_server: str
) -> None:
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=3)
    done = run_loadlab(
        *("run", profile, "--api", ok_server, "--out", str(out), "--quiet"),
        *("--set", "load.rate_per_s=1e9"),
        timeout_s=20,
    )
    assert done.code == EXIT_USAGE
    assert "load.rate_per_s" in assert_one_clear_line(done.stderr)
    assert not out.exists(), "a refused run claimed its results folder"


@pytest.mark.slow
def test_a_million_per_second_ends_generator_limited_within_20_s(
    tmp_path: Path, ok_server: str
) -> None:
    """1,000,000/s, the most a profile allows: no single-core generator offers it, and the
    run says so (exit 4) rather than blaming the server, in about its planned 3 s."""
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=3)
    done = run_loadlab(
        *("run", profile, "--api", ok_server, "--out", str(out), "--quiet"),
        *("--set", "load.rate_per_s=1000000"),
        timeout_s=20,
    )
    assert done.code == EXIT_INCONCLUSIVE, done.stdout + done.stderr
    summary = read_summary(out)
    assert summary["exit_code"] == EXIT_INCONCLUSIVE
    assert summary["generator"]["limited"] is True
    assert summary["verdict"]["findings"]["api"]["kind"] == "generator_limited"


@pytest.mark.slow
def test_50_mb_bodies_on_256_connections_stay_under_500_mib_and_count_as_too_large(
    tmp_path: Path, launched: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=100, duration_s=3)
    with start_hostile_process("http", "huge_body", body_bytes=HUGE_BODY_BYTES) as server:
        proc = start_loadlab(
            *("run", profile, "--api", server.url, "--out", str(out), "--quiet"),
            *("--set", "api.connections=256"),
        )
        launched.append(proc)
        peak_mib = peak_rss_mib(proc, RUN_S)
        done = finish(proc, RUN_S)
    assert peak_mib < PEAK_RSS_MIB
    assert done.code == EXIT_SLO_FAILED, done.stdout + done.stderr
    summary = read_summary(out)
    assert summary["exit_code"] == EXIT_SLO_FAILED
    assert summary["totals"]["requests"] > 0
    # Every response was too large: none counted as served, and no other error is blamed.
    assert summary["errors_by_outcome"]["api"] == {"too_large": summary["totals"]["requests"]}
    assert summary["verdict"]["findings"]["api"]["dominant_outcome"] == "too_large"


# -- two runs at once -------------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_started_together_get_separate_default_folders(
    tmp_path: Path, ok_server: str, launched: list[subprocess.Popen[str]]
) -> None:
    """Both name their folder results/<profile>-<UTC second>; started together they almost
    always pick the same second, and then one of them takes the ``-2`` suffix."""
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=2)
    procs = [
        start_loadlab("run", profile, "--api", ok_server, "--quiet", cwd=tmp_path) for _ in range(2)
    ]
    launched.extend(procs)
    dones = [finish(proc, RUN_S) for proc in procs]
    assert [d.code for d in dones] == [EXIT_OK, EXIT_OK], [d.stdout + d.stderr for d in dones]
    folders = [tmp_path / d.results_dir() for d in dones]
    assert folders[0] != folders[1]
    assert sorted((tmp_path / "results").iterdir()) == sorted(folders)
    for proc, done, folder in zip(procs, dones, folders, strict=True):
        run_id, pid = run_id_file(folder)
        assert pid == proc.pid, f"{folder} was claimed by another process"
        summary = read_summary(folder)
        assert summary["run_id"] == run_id
        assert summary["exit_code"] == done.code
        # One fixed run is judged once; a second run's step or rows would show up here.
        assert file_lines(folder / "steps.jsonl") == 1
        assert len(summary["steps"]) == 1
        # The header and one row per 1 s interval: 2 s of load, plus the run's start (up to an
        # interval) and the drain and closing intervals after it.
        assert file_lines(folder / "timeline.csv") <= 1 + 2 + 4


@pytest.mark.slow
def test_two_runs_on_the_same_out_folder_one_refused_in_one_line(
    tmp_path: Path, ok_server: str, launched: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "shared"
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=2)
    procs = [
        start_loadlab("run", profile, "--api", ok_server, "--out", str(out), "--quiet")
        for _ in range(2)
    ]
    launched.extend(procs)
    dones = [finish(proc, RUN_S) for proc in procs]
    by_code = {d.code: (proc, d) for proc, d in zip(procs, dones, strict=True)}
    assert sorted(by_code) == [EXIT_OK, EXIT_USAGE], [d.stdout + d.stderr for d in dones]
    refused = by_code[EXIT_USAGE][1]
    assert str(out) in assert_one_clear_line(refused.stderr)
    winner, _ = by_code[EXIT_OK]
    run_id, pid = run_id_file(out)
    assert pid == winner.pid
    assert read_summary(out)["run_id"] == run_id


# -- a full disk ------------------------------------------------------------------------------


def disk_filling_profile(tmp_path: Path) -> str:
    """A 60 s run whose files grow fast: eight operations (a line each per interval in each hlog
    file) and four intervals a second, at 2,000/s."""
    return fixed_profile(
        tmp_path, rate_per_s=2000, duration_s=DISK_FULL_PLANNED_S, ops=8, interval_s=0.25
    )


def assert_stopped_on_write_error(done: Finished, strerror: str) -> None:
    assert done.code == EXIT_RESULTS_WRITE, done.stdout + done.stderr
    line = assert_one_clear_line(done.stderr)
    assert "writ" in line, line
    assert strerror in line, line


@pytest.mark.slow
def test_a_full_disk_stops_the_load_and_exits_74_in_one_line(
    tmp_path: Path, ok_server: str, launched: list[subprocess.Popen[str]]
) -> None:
    profile = disk_filling_profile(tmp_path)
    with tmpfs(tmp_path / "small", "64k") as disk:
        out = disk / "run"
        proc = start_loadlab("run", profile, "--api", ok_server, "--out", str(out), "--quiet")
        launched.append(proc)
        done = finish(proc, DISK_FULL_EXIT_S)
        assert_stopped_on_write_error(done, "No space left on device")
        # What was written is whole: no half-written temporary file is left behind.
        assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_a_file_size_limit_stops_the_load_and_exits_74_in_one_line(
    tmp_path: Path, ok_server: str, launched: list[subprocess.Popen[str]]
) -> None:
    """The same as a full disk, on any machine: RLIMIT_FSIZE makes a write past 64 KiB fail with
    EFBIG (setrlimit(2)), once SIGXFSZ, which would kill the process, is ignored."""
    out = tmp_path / "run"
    profile = disk_filling_profile(tmp_path)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = start_loadlab(
        "run", profile, "--api", ok_server, "--out", str(out), "--quiet", preexec_fn=limit_file_size
    )
    launched.append(proc)
    done = finish(proc, DISK_FULL_EXIT_S)
    assert_stopped_on_write_error(done, "File too large")
    # summary.json is small enough to be written under the limit, and says what happened.
    summary = read_summary(out)
    assert summary["complete"] is False
    assert summary["exit_code"] == EXIT_RESULTS_WRITE
    assert summary["duration_s"] < DISK_FULL_PLANNED_S / 2


# -- exit codes -------------------------------------------------------------------------------


def test_every_exit_code_is_in_the_readme_table() -> None:
    table = readme_exit_codes(README.read_text())
    assert sorted(table) == sorted(EXIT_CODES), "README.md '### Exit codes' table rows differ"


def test_every_exit_code_is_listed_by_run_help() -> None:
    done = run_loadlab("run", "--help", timeout_s=START_S)
    assert done.code == EXIT_OK
    assert sorted(help_exit_codes(done.stdout)) == sorted(EXIT_CODES)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("run_command", id="bug-outside-a-run"),
        pytest.param("run_profile", id="bug-inside-a-run"),
    ],
)
def test_a_bug_in_loadlab_exits_70_with_one_line_naming_the_log_of_its_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    """A crash is hard to cause on purpose, so the bug is planted: ``run_command`` (the CLI's
    last resort logs to a temporary file) or ``run_profile`` (inside a run: to its folder)."""

    def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("planted bug")

    async def crash_in_run(*args: object, **kwargs: object) -> RunOutcome:
        raise RuntimeError("planted bug")

    monkeypatch.setattr(loadlab.launch, where, crash if where == "run_command" else crash_in_run)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a last-resort log goes
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=2)
    # Never connected to: the planted bug fires first.
    api = f"http://127.0.0.1:{closed_tcp_port()}"
    code = main(["run", profile, "--api", api, "--out", str(out), "--quiet"])
    assert code == EXIT_INTERNAL
    line = assert_one_clear_line(capsys.readouterr().err)
    assert "internal error" in line
    found = re.search(r"traceback is in (\S+\.log)", line)
    assert found, line
    log = Path(found[1])
    if where == "run_profile":
        assert log == out / "loadlab-error.log"
    assert log.is_relative_to(tmp_path)
    text = log.read_text()
    assert "Traceback" in text
    assert "RuntimeError: planted bug" in text


EXIT_SCENARIOS: dict[str, tuple[int, str | None, tuple[str, ...]]] = {
    "0-healthy-server": (EXIT_OK, "ok", ()),
    "1-server-answers-500": (EXIT_SLO_FAILED, "status_500", ()),
    "2-bad-set": (EXIT_USAGE, None, ("--set", "load.rate_per_s=fast")),
    "3-nothing-listening": (EXIT_UNREACHABLE, None, ()),
}
"""id -> (exit code, hostile server behaviour or None for a closed port, extra arguments)."""


@pytest.mark.parametrize(
    ("code", "behaviour", "extra"), list(EXIT_SCENARIOS.values()), ids=list(EXIT_SCENARIOS)
)
def test_exit_code_is_produced_by_its_scenario(
    tmp_path: Path, code: int, behaviour: str | None, extra: tuple[str, ...]
) -> None:
    out = tmp_path / "run"
    profile = fixed_profile(tmp_path, rate_per_s=200, duration_s=2)
    args = ("run", profile, "--out", str(out), "--quiet", *extra)
    if behaviour is None:
        done = run_loadlab(*args, "--api", f"http://127.0.0.1:{closed_tcp_port()}", timeout_s=RUN_S)
    else:
        with start_hostile_process("http", behaviour) as server:
            done = run_loadlab(*args, "--api", server.url, timeout_s=RUN_S)
    assert done.code == code, done.stdout + done.stderr
    if (out / "summary.json").exists():
        assert read_summary(out)["exit_code"] == code
    if code in (EXIT_USAGE, EXIT_UNREACHABLE):
        assert_one_clear_line(done.stderr)
    else:
        assert done.stderr == ""


EXIT_CODES_PROVEN_ELSEWHERE = {
    EXIT_ABORTED: (
        cluster_runs.test_a_cluster_that_slows_down_mid_ramp_stops_the_load_within_2_s_exit_5
    ),
    EXIT_INCONCLUSIVE: test_a_million_per_second_ends_generator_limited_within_20_s,
    EXIT_INTERNAL: test_a_bug_in_loadlab_exits_70_with_one_line_naming_the_log_of_its_traceback,
    EXIT_RESULTS_WRITE: test_a_file_size_limit_stops_the_load_and_exits_74_in_one_line,
    EXIT_INTERRUPTED: test_signal_mid_ramp_writes_a_summary_that_claims_nothing_and_stops_the_sim,
    EXIT_TERMINATED: test_signal_mid_ramp_writes_a_summary_that_claims_nothing_and_stops_the_sim,
}
"""Exit codes that a test above produces on its own (a planted bug, a signal, a file limit)."""


def test_every_documented_exit_code_has_a_scenario_that_produces_it() -> None:
    scenarios = {code for code, _, _ in EXIT_SCENARIOS.values()}
    assert not scenarios & set(EXIT_CODES_PROVEN_ELSEWHERE)
    assert sorted(scenarios | set(EXIT_CODES_PROVEN_ELSEWHERE)) == sorted(EXIT_CODES)
