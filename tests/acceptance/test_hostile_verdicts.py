"""`loadlab run` against real servers that lie, from the start and after a good start.

Each case is a real hostile server process on loopback (loadlab.testing.hostile) and a real
`loadlab run` process. None may print "passed" or exit 0; each must exit 1 (the server failed)
or 3 (it never spoke the protocol) with a line naming what went wrong. The runs of one table go
concurrently (they offer at most a few hundred requests per second), so the table costs about
as long as its slowest case.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadlab.errors import EXIT_SLO_FAILED, EXIT_UNREACHABLE
from loadlab.testing.hostile import HostileProcess, start_hostile_process

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

GOOD_FOR_S = 5.0
"""The 'after a good start' servers answer well this long (covers start-up and the first step)."""
RUN_TIMEOUT_S = 120.0

HTTP_PROFILE = """
name: hostile-http
api:
  timeout_s: 3
  connections: 16
  mix:
    - {name: get-pod, path: /api/v1/namespaces/default/pods/p, slo_p99_ms: 1000}
load:
  arrival: constant
  ramp: {start_per_s: 50, factor: 2, max_per_s: 400, step_s: 2, warmup_s: 0.5}
"""

DNS_PROFILE = """
name: hostile-dns
dns:
  timeout_s: 1
  queries:
    - {name: kubernetes.default.svc.cluster.local., type: A}
load:
  arrival: constant
  ramp: {start_per_s: 50, factor: 2, max_per_s: 400, step_s: 2, warmup_s: 0.5}
"""


@dataclass(frozen=True)
class Case:
    behaviour: str
    after_good_start: bool
    expect: tuple[str, ...]
    """Words of which at least one must appear in the finding line (the dominant outcome)."""

    @property
    def id(self) -> str:
        return f"{self.behaviour}{'-after-good-start' if self.after_good_start else ''}"


def cases(table: dict[str, tuple[str, ...]]) -> list[Case]:
    return [Case(b, after, words) for b, words in table.items() for after in (False, True)]


HTTP_CASES = cases(
    {
        "status_500": ("5xx",),
        "status_429": ("429",),
        "reset": ("conn_error", "reset by peer", "not with HTTP", "malformed"),
        "garbage": ("malformed", "not with HTTP", "conn_error"),
        "silence": ("unanswered", "timeout", "did not answer", "no answer", "no dns answer"),
        "trickle": ("unanswered", "timeout", "did not answer"),
    }
)
DNS_CASES = cases(
    {
        "refuse": ("refused",),
        "servfail": ("servfail",),
        "truncate": ("conn_error", "malformed", "truncat"),
        "wrong_id": ("unanswered", "timeout", "did not answer", "not with DNS"),
        "wrong_question": ("unanswered", "timeout", "did not answer", "not with DNS"),
        "garbage": ("malformed", "unanswered", "timeout", "did not answer", "not with DNS"),
        "silence": ("unanswered", "timeout", "did not answer", "no answer", "no dns answer"),
    }
)


def run_table(
    tmp_path: Path, kind: str, profile_text: str, table: list[Case]
) -> dict[str, tuple[int, str, str, dict[str, Any] | None]]:
    """Start a server and a `loadlab run` per case, all at once; return per case id the exit
    code, stdout, stderr and summary (None if none was written)."""
    profile = tmp_path / f"{kind}.yaml"
    profile.write_text(profile_text)
    results: dict[str, tuple[int, str, str, dict[str, Any] | None]] = {}
    with contextlib.ExitStack() as stack:
        runs: list[tuple[Case, subprocess.Popen[str], Path]] = []
        for case in table:
            options: dict[str, float | bool | None] = {}
            if case.after_good_start:
                options["good_for_s"] = GOOD_FOR_S
            if case.behaviour == "trickle":
                options["trickle_interval_s"] = 1.0
            server: HostileProcess = stack.enter_context(
                start_hostile_process(kind, case.behaviour, **options)  # type: ignore[arg-type]
            )
            flag = "--api" if kind == "http" else "--dns"
            where = server.url if kind == "http" else server.addr
            out = tmp_path / case.id
            cmd = [sys.executable, "-m", "loadlab", "run", str(profile), flag, where]
            cmd += ["--out", str(out), "--quiet"]
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "COLUMNS": "200"},
            )
            stack.callback(_kill, proc)
            runs.append((case, proc, out))
        for case, proc, out in runs:
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
            summary_path = out / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
            results[case.id] = (proc.returncode, stdout, stderr, summary)
    return results


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def check(case: Case, code: int, stdout: str, stderr: str, summary: dict[str, Any] | None) -> None:
    where = f"{case.id}: exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert code in (EXIT_SLO_FAILED, EXIT_UNREACHABLE), where
    assert "passed" not in stdout.lower().replace("after passing", ""), where
    assert "Traceback" not in stderr, where
    text = (stdout + stderr).lower()
    assert any(word.lower() in text for word in case.expect), where
    if code == EXIT_UNREACHABLE:
        # Never spoke the protocol: one line on stderr, no results claimed.
        assert len(stderr.strip().splitlines()) == 1, where
        assert not case.after_good_start, f"a server that started well was reachable: {where}"
        return
    assert summary is not None, where
    assert summary["exit_code"] == code, where
    assert summary["verdict"]["passed"] is False, where
    assert summary["slo"]["passed"] is False, where
    finding = next(iter(summary["verdict"]["findings"].values()))
    assert finding["kind"] in ("failed_at_lowest_load", "stopped_serving"), where


def test_http_servers_that_lie_never_pass(tmp_path: Path) -> None:
    results = run_table(tmp_path, "http", HTTP_PROFILE, HTTP_CASES)
    for case in HTTP_CASES:
        check(case, *results[case.id])


def test_dns_servers_that_lie_never_pass(tmp_path: Path) -> None:
    results = run_table(tmp_path, "dns", DNS_PROFILE, DNS_CASES)
    for case in DNS_CASES:
        check(case, *results[case.id])


def test_a_server_killed_mid_run_ends_the_run_with_that_finding(tmp_path: Path) -> None:
    profile = tmp_path / "http.yaml"
    profile.write_text(HTTP_PROFILE)
    with start_hostile_process("http", "ok", die_after_s=GOOD_FOR_S) as server:
        cmd = [sys.executable, "-m", "loadlab", "run", str(profile), "--api", server.url]
        result = subprocess.run(
            [*cmd, "--out", str(tmp_path / "run"), "--quiet"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    assert result.returncode == EXIT_SLO_FAILED, result
    assert "stopped serving" in result.stdout, result.stdout
    assert "conn_error" in result.stdout, result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # It stopped at the first step that served nothing, not after bisecting a dead port.
    steps = summary["steps"]
    assert steps[-1]["ok_count"] == 0
    assert sum(1 for s in steps if s["ok_count"] == 0) == 1, steps
