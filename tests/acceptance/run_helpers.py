"""Helpers for end-to-end tests that signal, starve or crowd a real ``loadlab run`` process.

Everything here runs the CLI as a user would (a fresh ``python -m loadlab`` process) and watches
it from outside, with psutil and the files it leaves, in loops bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

POLL_S = 0.05
"""How often a watcher looks again: well under the 1 s interval a run writes at."""
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-{i}"


@dataclass(frozen=True)
class Finished:
    """A ``loadlab`` process that has exited, and what it printed."""

    code: int
    stdout: str
    stderr: str
    exited_at: float
    """``time.monotonic()`` when its exit was seen (within POLL_S of the real exit)."""

    def results_dir(self) -> Path:
        """The folder named on the ``results: DIR`` line a run prints first."""
        for line in self.stdout.splitlines():
            if line.startswith("results: "):
                return Path(line.removeprefix("results: "))
        raise AssertionError(f"no 'results:' line in stdout:\n{self.stdout}")


def start_loadlab(
    *args: str,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """Start ``loadlab ARGS`` as a user would; stdout and stderr captured as text.

    ``new_session``: in its own process group (with whatever it starts), so a test can send the
    group a signal as a terminal's Ctrl-C does.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "loadlab", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120"},
        preexec_fn=preexec_fn,
        start_new_session=new_session,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float) -> Finished:
    """Wait (at most ``timeout_s``) for ``proc`` to exit and collect its output; a process that
    does not exit in time is killed and the test fails."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"loadlab did not exit within {timeout_s} s\nstdout:\n{stdout}\n{stderr}")
    return Finished(proc.returncode, stdout, stderr, time.monotonic())


def run_loadlab(*args: str, timeout_s: float, cwd: Path | None = None) -> Finished:
    return finish(start_loadlab(*args, cwd=cwd), timeout_s)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test, saying ``what`` was awaited, if it does
    not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / POLL_S) + 1):
        if condition():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def wait_while_running(
    proc: subprocess.Popen[str], condition: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """``wait_until`` for a condition on a running ``proc``: fail at once, with its output, if
    ``proc`` exits first."""

    def check() -> bool:
        if proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"loadlab exited with {proc.returncode} before {what}\n{out}\n{err}")
        return condition()

    wait_until(check, timeout_s, what)


def sim_child(proc: subprocess.Popen[str], timeout_s: float) -> psutil.Process:
    """The embedded sim that ``proc`` (a ``loadlab run`` without --api) started, by its PID."""
    parent = psutil.Process(proc.pid)
    found: list[psutil.Process] = []

    def started() -> bool:
        for child in parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "loadlab.sim" in child.cmdline():
                    found.append(child)
                    return True
        return False

    wait_while_running(proc, started, timeout_s, f"loadlab (pid {proc.pid}) started its sim")
    return found[0]


def is_gone(proc: psutil.Process) -> bool:
    """The process has exited. A zombie counts: it runs nothing and holds no socket; it waits
    only for a parent (or, orphaned, for PID 1) to reap it. ``is_running`` also compares the
    start time, so a reused PID is not mistaken for it."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gone_within(proc: psutil.Process, within_s: float, *, since: float) -> bool:
    """Whether ``proc`` is gone by ``since + within_s`` (``time.monotonic()`` times)."""
    deadline = since + within_s
    for _ in range(int(within_s / POLL_S) + 2):
        if is_gone(proc):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return is_gone(proc)


def file_lines(path: Path) -> int:
    """Complete lines in ``path`` so far (0 if it does not exist yet)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def peak_rss_mib(proc: subprocess.Popen[str], timeout_s: float) -> float:
    """Watch ``proc`` until it exits and return its peak resident memory in MiB, children
    excluded. Sampled with psutil; on Linux the kernel's own high-water mark (``VmHWM`` in
    /proc/PID/status, proc(5)) is read as well, so a spike between two samples is not missed."""
    watched = psutil.Process(proc.pid)
    peak = 0
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / POLL_S) + 1):
        if proc.poll() is not None or time.monotonic() >= deadline:
            break
        try:
            peak = max(peak, watched.memory_info().rss, _vm_hwm_bytes(proc.pid))
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_S)
    return peak / 2**20


def _vm_hwm_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # proc(5): in kB
    return 0


def assert_one_clear_line(stderr: str) -> str:
    """stderr is one ``loadlab: ...`` line and no traceback; return it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("loadlab: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def read_summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def write_fixed_profile(
    path: Path,
    *,
    rate_per_s: float,
    duration_s: float,
    ops: int = 1,
    interval_s: float = 1.0,
    connections: int = 64,
) -> Path:
    """A fixed-rate open-loop profile of lease GETs, spread over ``ops`` operations of equal
    weight (each adds one line per interval to the hlog files), written to ``path``."""
    profile = {
        "name": path.stem,
        "description": "lease GETs at a fixed open-loop rate",
        "interval_s": interval_s,
        "api": {
            "connections": connections,
            "timeout_s": 5,
            "mix": [
                {"name": f"get-lease-{n}", "method": "GET", "path": LEASE_PATH, "spread": 100}
                for n in range(ops)
            ],
        },
        "load": {"mode": "open", "rate_per_s": rate_per_s, "duration_s": duration_s},
    }
    # JSON is YAML (1.2), and needs no dumper here.
    path.write_text(json.dumps(profile, indent=2) + "\n")
    return path


def run_id_file(out: Path) -> tuple[str, int]:
    """(run id, pid) from the ``run.id`` file a run claims its folder with."""
    run_id, word, pid = (out / "run.id").read_text().split()
    assert word == "pid"
    return run_id, int(pid)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``64k``) on ``path`` for the test; skip when this machine does
    not let us mount (not root, no CAP_SYS_ADMIN in a container, no mount(8))."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount(8) on this machine: cannot make a small tmpfs")
    if mounted.returncode != 0:
        why = mounted.stderr.strip()
        if os.geteuid() != 0 or _is_permission_error(why):
            pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {why}")
        pytest.fail(f"mount -t tmpfs failed: {why}")
    try:
        yield path
    finally:
        # Lazily (-l) if busy, so a process the test failed to end cannot wedge the mount.
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            subprocess.run(
                ["umount", "-l", str(path)], capture_output=True, timeout=30, check=False
            )


def _is_permission_error(message: str) -> bool:
    lowered = message.lower()
    return any(s in lowered for s in ("permission denied", "not permitted", "superuser"))


def help_exit_codes(help_text: str) -> dict[int, str]:
    """The ``exit codes:`` block of ``loadlab run --help``: code -> first line of its meaning."""
    codes: dict[int, str] = {}
    lines = help_text.splitlines()
    start = lines.index("exit codes:") + 1
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        first, _, rest = line.strip().partition(" ")
        if first.isdigit():
            codes[int(first)] = rest.strip()
    return codes


def readme_exit_codes(readme: str) -> dict[int, str]:
    """The rows ``| 0 | meaning |`` of the README's exit-code table: the first table under a
    heading that names exit codes (``### Exit codes``), up to the next heading."""
    codes: dict[int, str] = {}
    lines = readme.splitlines()
    heading = re.compile(r"^#+\s.*exit codes?", re.IGNORECASE)
    start = next((i for i, line in enumerate(lines) if heading.match(line)), None)
    if start is None:
        return codes
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2 and cells[0].isdigit():
            codes[int(cells[0])] = cells[1]
    return codes
