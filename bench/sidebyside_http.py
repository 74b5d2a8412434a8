"""wrk and ``loadlab run http-throughput`` against the same loopback server, A B A B, with the
ratio of their medians.

Run from the repository root: ``.venv/bin/python -m bench.sidebyside_http`` (``make bench`` does).

The server (``--server nginx``, the default: nginx with one worker returning a small JSON object,
access log off; ``raw``: a minimal keep-alive responder on a bare uvloop protocol; ``capacity``:
``loadlab.testing.capacity``, 2000 req/s by construction, a sanity check where both tools must
read ~2000/s) is pinned to one core and the generators to the other. Then, ``--rounds`` times in
turn, for ``--duration`` seconds each: ``wrk -t1 -c64 --latency`` on the profile's path, and
``loadlab run http-throughput`` (64 connections, 64 in flight, as a user runs it). Then, unless
``--no-open``, one open-loop run of the same profile at ``--open-fraction`` of loadlab's median.
The JSON document goes to ``--out`` (default ``bench/results/<UTC date>-http.json``,
or ``-http-2.json`` and so on after a run that day).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import psutil

from bench.sidebyside import (
    ToolResult,
    add_common_arguments,
    alternate,
    check_common_arguments,
    document,
    load_window,
    machine_facts,
    median_result,
    pin_server_tree,
    run_loadlab,
    save_and_print,
    stop_process_group,
)
from loadlab import runloop
from loadlab.metrics.timeline import read_timeline
from loadlab.profile import load_profile
from loadlab.shipped import profile_file
from loadlab.testing.cpu import run_tool
from loadlab.testing.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
WRK = "/usr/bin/wrk"
NGINX = "/usr/sbin/nginx"
PROFILE = "http-throughput"
PACKAGES = ("wrk", "nginx-light", "nginx")
READY_TIMEOUT_S = 10.0
OK_BODY = b'{"kind":"Status","status":"Success"}'
RAW_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(OK_BODY)).encode()
    + b"\r\n\r\n"
    + OK_BODY
)
END_OF_HEADERS = b"\r\n\r\n"
NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # nginx closes a keep-alive connection after 1000 requests by default; both tools would
    # then measure their reconnects.
    keepalive_requests 1000000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""
"""One worker, no access log, every path answered 200 with ``OK_BODY``; files in the temp dir."""


# -- servers -------------------------------------------------------------------------------------


class CannedHttp(asyncio.Protocol):
    """Answers every request head with ``answer`` (default: one canned 200): GETs without
    bodies, keep-alive. The raw server here, and the agents' client benchmarks' server."""

    def __init__(self, answer: bytes = RAW_RESPONSE) -> None:
        self._answer = answer
        self._transport: asyncio.WriteTransport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport: cast, do not isinstance.
        self._transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._tail + data if self._tail else data
        heads = buf.count(END_OF_HEADERS)
        if heads and self._transport is not None:
            self._transport.write(self._answer * heads)
            buf = buf[buf.rfind(END_OF_HEADERS) + len(END_OF_HEADERS) :]
        self._tail = buf[-65536:]  # a head longer than 64 KiB is not one a client here sends


async def _serve_raw() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(CannedHttp, "127.0.0.1", 0, backlog=4096)
    port = int(server.sockets[0].getsockname()[1])
    print(json.dumps({"api": f"http://127.0.0.1:{port}"}), flush=True)
    async with server:
        await stop.wait()


def start_server(kind: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server in its own process group; return it and its base URL once it listens."""
    if kind == "nginx":
        return start_nginx(tmp)
    if kind == "capacity":
        argv = [sys.executable, "-m", "loadlab.testing.capacity", "--ready-json"]
    else:
        argv = [sys.executable, "-m", "bench.sidebyside_http", "--serve-raw"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True, cwd=REPO_ROOT)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        os.set_blocking(proc.stdout.fileno(), False)
        buf = b""
        while b"\n" not in buf:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start (exit {proc.poll()})")
            buf += proc.stdout.read() or b""
            time.sleep(0.02)
        url = str(json.loads(buf.split(b"\n", 1)[0])["api"])
    except BaseException:
        stop_process_group(proc)
        raise
    return proc, url


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx with ``NGINX_CONF`` in ``tmp``, in the foreground (``daemon off``), once it listens.
    As root its worker would switch to ``nobody``: ``user root`` keeps it as it is."""
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, body=OK_BODY.decode("ascii")))
    # -e: the error log from the start (else nginx first opens /var/log/nginx/error.log).
    argv = [NGINX, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
                raise RuntimeError(f"nginx did not start (exit {proc.poll()}): {log.strip()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
    except BaseException:
        stop_process_group(proc)
        raise
    return proc, f"http://127.0.0.1:{port}"


def serving_pid(pid: int) -> int:
    """The process that serves: nginx's one worker (the master only watches it), else ``pid``."""
    children = psutil.Process(pid).children()
    return int(children[0].pid) if len(children) == 1 else pid


# -- wrk -----------------------------------------------------------------------------------------

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_duration_ms(text: str) -> float:
    """``612.53us`` / ``1.20ms`` / ``2.00s`` -> milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> tuple[float, float, float, float, int]:
    """Requests/sec, p50, p99 and mean latency in ms and errors from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    avg = re.search(r"^\s+Latency\s+(\S+)", output, re.MULTILINE)
    if rps is None or p50 is None or p99 is None or avg is None:
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock is not None:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx is not None:
        errors += int(non2xx.group(1))
    return (
        float(rps.group(1)),
        wrk_duration_ms(p50.group(1)),
        wrk_duration_ms(p99.group(1)),
        wrk_duration_ms(avg.group(1)),
        errors,
    )


def run_wrk(url: str, duration_s: float, connections: int, server_pid: int) -> ToolResult:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{round(duration_s)}s", "--latency", url]
    run = run_tool(argv, timeout_s=duration_s + 15, server_pid=server_pid)
    rps, p50, p99, avg, errors = parse_wrk(run.stdout)
    return ToolResult(
        tool=f"wrk -t1 -c{connections}",
        rate_per_s=rps,
        p50_ms=p50,
        p99_ms=p99,
        avg_ms=avg,
        generator_cpu_percent=run.tool_cpu_percent,
        server_cpu_percent=run.server_cpu_percent,
        errors=errors,
        command=" ".join(argv),
    )


# -- the run -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/sidebyside_http.py", description=(__doc__ or "").split("\n\n")[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--server", choices=["nginx", "raw", "capacity"], default="nginx")
    parser.add_argument(
        "--open-fraction",
        type=float,
        default=0.8,
        help="the open-loop run's rate, as a fraction of loadlab's closed-loop median (0.8)",
    )
    parser.add_argument("--no-open", action="store_true", help="skip the open-loop run")
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_raw:
        return args
    check_common_arguments(parser, args)
    if not 0 < args.open_fraction <= 2:
        parser.error("--open-fraction must be within (0, 2]")
    return args


def open_loop(
    url: str, rate_per_s: float, args: argparse.Namespace, server_pid: int, out_dir: Path
) -> dict[str, Any]:
    """The profile as an open loop at ``rate_per_s``: offered, achieved, lag, latency."""
    result = run_loadlab(
        PROFILE,
        "--api",
        url,
        target="api",
        duration_s=args.duration,
        server_pid=server_pid,
        out_dir=out_dir,
        settings=["load.mode=open", f"load.rate_per_s={rate_per_s:.0f}"],
    )
    window = load_window(read_timeline(out_dir / "timeline.csv"), "api")
    return {
        **asdict(result),
        "offered_per_s": round(rate_per_s),
        "lag_p99_ms": window.lag_p99_ms,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_raw:
        with runloop.runner() as runner:
            runner.run(_serve_raw())
        return 0
    needed = [WRK, NGINX] if args.server == "nginx" else [WRK]
    missing = [binary for binary in needed if shutil.which(binary) is None]
    if missing:
        print(f"{', '.join(missing)} not found: `make bench` installs them", file=sys.stderr)
        return 2
    with profile_file(PROFILE) as profile_path:
        profile = load_profile(profile_path)
    assert profile.api is not None, f"{PROFILE} has an api section"
    connections = profile.traffic.concurrency  # wrk -c: connections, each one request in flight
    url_path = profile.api.mix[0].path.replace("{i}", "0")  # wrk asks one of the profile's paths
    facts = machine_facts(PACKAGES)
    # SIGTERM unwinds through the finally below, so the server never outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    open_run: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="sidebyside-http-") as tmp_name:
        tmp = Path(tmp_name)
        server, url = start_server(args.server, tmp)
        try:
            pinning = pin_server_tree(
                server.pid, not args.no_pin, server=args.server, generators="loadlab, wrk"
            )
            busy_pid = serving_pid(server.pid)
            if not args.json:
                print(f"server: {args.server} at {url}; {pinning}", flush=True)
            tools = {
                "wrk": lambda _: run_wrk(url + url_path, args.duration, connections, busy_pid),
                "loadlab": lambda round_no: run_loadlab(
                    PROFILE,
                    "--api",
                    url,
                    target="api",
                    duration_s=args.duration,
                    server_pid=busy_pid,
                    out_dir=tmp / f"run-{round_no}",
                    profile_to=args.profile,
                ),
            }
            runs = alternate(args.rounds, tools, quiet=args.json)
            if not args.no_open:
                rate = args.open_fraction * median_result(runs["loadlab"]).rate_per_s
                open_run = open_loop(url, rate, args, busy_pid, tmp / "open")
        finally:
            stop_process_group(server)
    doc = document(
        "http",
        args,
        facts,
        pinning,
        runs,
        cpu_bound=args.server != "capacity",  # a server of set capacity saturates no core
        server=args.server,
        url_path=url_path,
        open_loop=open_run,
    )
    save_and_print(args, doc, "http")
    if open_run is not None and not args.json:
        print(
            f"open loop at {open_run['offered_per_s']:,}/s: {open_run['rate_per_s']:,.0f}/s OK,"
            f" p99 {open_run['p99_ms']:.2f} ms, schedule lag p99 {open_run['lag_p99_ms']:.2f} ms,"
            f" generator CPU {open_run['generator_cpu_percent']:.0f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
