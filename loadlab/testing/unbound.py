"""A real unbound on loopback for tests: config writer, start/stop, readiness wait.

Shared test helper (not a fixture module): ``with running_unbound(tmp_path) as server: ...``.
Pass ``extra_server_lines`` (e.g. ``["ip-ratelimit: 200"]``) to add ``server:`` options.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from loadlab.testing.ports import free_port

UNBOUND = "/usr/sbin/unbound"
DEFAULT_RECORDS = (
    "kubernetes.default.svc.cluster.local. A 192.0.2.1",
    "kube-dns.kube-system.svc.cluster.local. A 192.0.2.10",
    "web.default.svc.cluster.local. A 192.0.2.20",
    "web.default.svc.cluster.local. AAAA 2001:db8::20",
)
"""Simulated records point only into 192.0.2.0/24 (TEST-NET-1) and 2001:db8::/32."""
READY_TIMEOUT_S = 10.0
READY_POLL_S = 0.05


@dataclass(frozen=True)
class UnboundServer:
    host: str
    port: int
    config_path: Path

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


def unbound_binary() -> str | None:
    """The unbound executable: Debian's path, else the first on PATH; None when not installed."""
    return UNBOUND if Path(UNBOUND).exists() else shutil.which("unbound")


def unbound_available() -> bool:
    return unbound_binary() is not None


def write_config(
    directory: Path,
    port: int,
    *,
    records: Sequence[str] = DEFAULT_RECORDS,
    extra_server_lines: Sequence[str] = (),
    host: str = "127.0.0.1",
) -> Path:
    lines = [
        "server:",
        f"  interface: {host}",
        f"  port: {port}",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        "  use-syslog: no",
        '  logfile: ""',
        f'  directory: "{directory}"',
        f'  pidfile: "{directory}/unbound.pid"',
        "  do-ip6: no",
        "  num-threads: 1",
        "  verbosity: 0",
        '  module-config: "iterator"',
        "  access-control: 127.0.0.0/8 allow",
        '  local-zone: "cluster.local." static',
        *[f'  local-data: "{record}"' for record in records],
        *[f"  {line}" for line in extra_server_lines],
        "remote-control:",
        "  control-enable: no",
    ]
    path = directory / "unbound.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until_answering(server: UnboundServer, process: subprocess.Popen[bytes]) -> None:
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"unbound exited with {process.returncode}")
        with contextlib.suppress(dns.exception.Timeout, OSError):
            dns.query.udp(query, server.host, port=server.port, timeout=READY_POLL_S)
            return
        time.sleep(READY_POLL_S)
    raise RuntimeError(f"unbound did not answer on {server.addr} in {READY_TIMEOUT_S} s")


@contextlib.contextmanager
def running_unbound(
    directory: Path,
    *,
    records: Sequence[str] = DEFAULT_RECORDS,
    extra_server_lines: Sequence[str] = (),
) -> Iterator[UnboundServer]:
    """Start unbound in the foreground with a config in ``directory``; stop it on exit."""
    port = free_port()
    config = write_config(directory, port, records=records, extra_server_lines=extra_server_lines)
    binary = unbound_binary() or UNBOUND
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = UnboundServer("127.0.0.1", port, config)
    try:
        try:
            wait_until_answering(server, process)
        except RuntimeError as exc:
            process.kill()
            _, err = process.communicate(timeout=5)
            raise RuntimeError(f"{exc}: {err.decode(errors='replace')[-2000:]}") from None
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()
