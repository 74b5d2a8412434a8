"""Start the sim as a separate process, so generator and sim share neither event loop nor core.

``start_sim_process(["--nodes", "500"])`` runs ``python -m loadlab.sim ... --api-port 0
--dns-port 0 --ready-json`` and waits for its one JSON line ``{"api": URL, "dns": HOST:PORT}``
(plus ``"kubeconfig"`` and ``"tokens_file"`` when ``--kubeconfig-out`` / ``--tokens-out`` are
among the arguments: ``["--tls", "--kubeconfig-out", PATH]`` gives an HTTPS sim and a kubeconfig
for it; and ``"dns_metrics_url"`` with ``--dns-metrics-port``).

The sim never outlives this process: it holds a lifeline (``loadlab.sim.lifeline``: a parent-death
signal on Linux, and a pipe everywhere) from before its seeding, so a SIGKILLed loadlab takes it
along; and an interrupt (Ctrl-C) while waiting for the ready line kills and reaps it before
propagating. Call ``start_sim_process`` from the main thread (or one that lives as long as the
sim): Linux's parent-death signal fires when the *thread* that started the sim exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO

from loadlab.errors import TargetUnreachable
from loadlab.sim.lifeline import ParentLifeline

START_TIMEOUT_S = 120.0  # 30 s scale target (docs/control-plane-model.md) x4 for a slow box
# Not from a reference: how long the sim may take after SIGTERM (ending watches, closing sockets)
# before SIGKILL; generous, as a busy 2-core machine can be slow to schedule it.
STOP_GRACE_S = 10.0
_STDERR_TAIL_BYTES = 2000


class SimProcess:
    """A running sim subprocess: where it listens, and ``stop()`` (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        api_url: str,
        dns_addr: str,
        log: IO[bytes],
        lifeline: ParentLifeline,
        *,
        kubeconfig: str | None = None,
        tokens_file: str | None = None,
        dns_metrics_url: str | None = None,
    ) -> None:
        self._proc = proc
        self.api_url = api_url
        """``http://127.0.0.1:PORT``, or ``https://`` with ``--tls``."""
        self.dns_addr = dns_addr
        """``127.0.0.1:PORT`` (UDP and TCP)."""
        self.kubeconfig = kubeconfig
        """Absolute path of the kubeconfig the sim wrote (``--kubeconfig-out``), else None."""
        self.tokens_file = tokens_file
        """Absolute path of the static token file it wrote (``--tokens-out``), else None."""
        self.dns_metrics_url = dns_metrics_url
        """The DNS's coredns_* metrics (``--dns-metrics-port``), else None."""
        self._log = log
        self._lifeline = lifeline

    @property
    def pid(self) -> int:
        return self._proc.pid

    def log_tail(self, max_bytes: int = _STDERR_TAIL_BYTES) -> str:
        """The last ``max_bytes`` the sim wrote to stderr (its slow-down lines, its warnings).

        Read with ``pread``: the sim shares the file's offset, so a seek here would move where
        its next line lands."""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        return os.pread(fd, size - start, start).decode(errors="replace")

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM; SIGKILL if it has not exited after ``grace_s``. Returns the exit code."""
        try:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(grace_s)
            return self._proc.returncode
        finally:
            # Only now: cutting the lifeline earlier would end the sim before its clean shutdown.
            self._lifeline.cut()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._log.close()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stderr_tail(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - _STDERR_TAIL_BYTES))
    return log.read().decode(errors="replace").strip()


def read_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    """The first line ``proc`` writes to its stdout pipe, waiting until ``deadline``
    (``time.monotonic``); TimeoutError past it, EOFError if the process closes stdout first.
    Shared with ``loadlab.testing.hostile``'s processes, which announce themselves the same way."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError
            buf += chunk
    return buf.split(b"\n", 1)[0]


def start_sim_process(
    config_args: Sequence[str] = (),
    *,
    timeout_s: float = START_TIMEOUT_S,
    python: str = sys.executable,
) -> SimProcess:
    """Launch the sim with ``config_args`` (e.g. ``["--nodes", "500", "--config", "sim.yaml"]``)
    on free ports and wait until it is ready. Raises ``TargetUnreachable`` if it does not start."""
    cmd = [
        python,
        "-m",
        "loadlab.sim",
        *config_args,
        "--api-port",
        "0",
        "--dns-port",
        "0",
        "--ready-json",
    ]
    # The log outlives this function: SimProcess owns and closes it.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    lifeline = ParentLifeline()
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **lifeline.child_env()},
            pass_fds=(lifeline.child_fd,),
        )
    except BaseException:
        lifeline.cut()
        log.close()
        raise
    try:
        lifeline.close_child_end()
        line = read_ready_line(proc, time.monotonic() + timeout_s)
        ready = json.loads(line)
        return SimProcess(
            proc,
            str(ready["api"]),
            str(ready["dns"]),
            log,
            lifeline,
            kubeconfig=_optional_str(ready.get("kubeconfig")),
            tokens_file=_optional_str(ready.get("tokens_file")),
            dns_metrics_url=_optional_str(ready.get("dns_metrics_url")),
        )
    except (TimeoutError, EOFError, ValueError, KeyError) as exc:
        _kill_and_reap(proc, lifeline)
        tail = _stderr_tail(log)
        log.close()
        why = "timed out" if isinstance(exc, TimeoutError) else "failed"
        raise TargetUnreachable(
            f"the embedded sim {why} to start ({' '.join(cmd[1:])}): {tail or exc!r}. "
            "Check the sim options, or pass --api/--dns to use a real control plane."
        ) from exc
    except BaseException:
        # KeyboardInterrupt (Ctrl-C), SystemExit from a SIGTERM handler, anything: the sim is
        # still seeding and nobody else knows its pid, so it goes before the exception does.
        _kill_and_reap(proc, lifeline)
        log.close()
        raise


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _kill_and_reap(proc: subprocess.Popen[bytes], lifeline: ParentLifeline) -> None:
    """SIGKILL the sim that is not ready, wait for it, and release its pipes and lifeline."""
    try:
        proc.kill()
        proc.wait(STOP_GRACE_S)
    finally:
        lifeline.cut()
        if proc.stdout is not None:
            proc.stdout.close()
