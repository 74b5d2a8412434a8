"""Bad inputs, tried as a new user would: one clear line on stderr and the documented exit code."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadlab.testing.cli_output import assert_one_clear_line
from loadlab.testing.ports import closed_tcp_port
from tests.acceptance.helpers import loadlab

pytestmark = pytest.mark.realtime


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server on loopback that answers every connection with bytes that are not HTTP."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(10_000):  # bounded; ends long before on stop
            if stop.is_set():
                return
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        srv.close()


def test_missing_profile_exits_2() -> None:
    result = loadlab("run", "no-such-profile.yaml")
    assert result.returncode == 2
    assert "no such file" in assert_one_clear_line(result.stderr)


def test_misspelt_field_exits_2_naming_it(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\napi:\n  mix:\n    - {name: get, path: /api}\nload:\n  rate_per_sec: 10\n"
    )
    result = loadlab("run", str(profile))
    assert result.returncode == 2
    assert "load.rate_per_sec" in assert_one_clear_line(result.stderr)


def test_bad_override_exits_2() -> None:
    result = loadlab("run", "http-knee", "--set", "load.ramp.factor=0.5")
    assert result.returncode == 2
    assert "load.ramp.factor" in assert_one_clear_line(result.stderr)


def test_unreachable_api_exits_3(tmp_path: Path) -> None:
    port = closed_tcp_port()
    url = f"http://127.0.0.1:{port}"
    result = loadlab("run", "http-knee", "--api", url, "--out", str(tmp_path))
    assert result.returncode == 3
    assert "--api" in assert_one_clear_line(result.stderr)


def test_api_answering_garbage_exits_3(garbage_server: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{garbage_server}"
    result = loadlab("run", "http-knee", "--api", url, "--out", str(tmp_path))
    assert result.returncode == 3
    assert_one_clear_line(result.stderr)


def test_silent_dns_exits_3(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = loadlab("run", "dns-knee", "--dns", f"127.0.0.1:{port}", "--out", str(tmp_path))
    assert result.returncode == 3
    assert "--dns" in assert_one_clear_line(result.stderr)


def test_non_loopback_target_is_refused_before_any_traffic() -> None:
    result = loadlab("run", "http-knee", "--api", "http://192.0.2.1:6443")
    assert result.returncode == 2
    assert "loopback" in assert_one_clear_line(result.stderr)


def test_api_flag_on_a_dns_only_profile_exits_2() -> None:
    result = loadlab("run", "dns-knee", "--api", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "no 'api' section" in assert_one_clear_line(result.stderr)


def test_help_teaches_exit_codes() -> None:
    result = loadlab("run", "--help")
    assert result.returncode == 0
    assert "exit codes" in result.stdout
    assert "inconclusive" in result.stdout
