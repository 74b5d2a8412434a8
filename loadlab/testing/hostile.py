"""Servers on loopback that misbehave on purpose, to prove loadlab never passes a broken target.

``HostileHttpServer`` answers every request (any method, any path, keep-alive) the way its
``HttpBehaviour`` says; ``HostileDnsServer`` (in ``hostile_dns``) does the same for DNS. Either may
answer well first (``good_for_s`` and/or a count of requests) and then turn. Both count what they
receive, so a test can assert that a client sent exactly N requests (did not retry).

In a separate process, for "the server dies mid-run"::

    python -m loadlab.testing.hostile http --behaviour status_500 --good-for-s 3 --port 0
    python -m loadlab.testing.hostile dns --behaviour refuse --die-after-s 5

prints one JSON line (``{"url": "http://127.0.0.1:PORT"}`` or ``{"addr": "127.0.0.1:PORT"}``)
when ready and serves until SIGTERM/SIGINT (or SIGKILLs itself after ``--die-after-s``).
``start_hostile_process`` does that from a test and never leaves the process behind.

The HTTP server speaks raw HTTP/1.1 over asyncio streams rather than aiohttp.web: resets, garbage
and trickled bodies need the socket, and the same code runs under uvloop and plain asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, Self

from loadlab import runloop
from loadlab.clock import NS_PER_S, Clock, MonotonicClock
from loadlab.sim.process import read_ready_line

if TYPE_CHECKING:
    from loadlab.testing.hostile_dns import HostileDnsServer

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class GoodFirst:
    """How long a hostile server answers well before it turns; the first limit reached ends it.

    With neither limit it is hostile from the first request.
    """

    for_s: float | None = None
    """Seconds from ``start()``, on the server's clock."""
    for_count: int | None = None
    """Requests (or queries) answered well."""

    def __post_init__(self) -> None:
        if (self.for_s is not None and self.for_s < 0) or (
            self.for_count is not None and self.for_count < 0
        ):
            raise ValueError("good_for_s and good_for_requests/queries must be >= 0")

    def is_good(self, elapsed_ns: int, seen_before: int) -> bool:
        """Whether a request arriving ``elapsed_ns`` after start, after ``seen_before`` others,
        gets a good answer."""
        if self.for_s is None and self.for_count is None:
            return False
        if self.for_s is not None and elapsed_ns >= self.for_s * NS_PER_S:
            return False
        return self.for_count is None or seen_before < self.for_count


def check_loopback(host: str) -> None:
    """Hostile servers are for IPv4 loopback only (127.0.0.0/8): they must never face a network."""
    try:
        loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"a hostile server listens on loopback only (127.x.x.x), not {host!r}")


class HttpBehaviour(StrEnum):
    """What a ``HostileHttpServer`` does with a request once its good phase is over."""

    OK = "ok"
    """200 and a small Kubernetes Lease (a control)."""
    STATUS_500 = "status_500"
    """500 and a Kubernetes Status body."""
    STATUS_429 = "status_429"
    """429 with ``Retry-After: <retry_after_s>``, as API Priority and Fairness rejects."""
    GARBAGE = "garbage"
    """An SSH banner and binary bytes (not HTTP), then close."""
    RESET = "reset"
    """Close with a TCP RST (SO_LINGER 0) as soon as a request arrives."""
    SILENCE = "silence"
    """Read the request, never answer, keep the connection open."""
    TRICKLE = "trickle"
    """Status line and headers at once, then the Lease body one byte per ``trickle_interval_s``."""
    HUGE_BODY = "huge_body"
    """200 with a JSON body of ``body_bytes``, streamed from one reused chunk."""


@dataclass(frozen=True)
class HttpServerStats:
    """What a ``HostileHttpServer`` has seen since it started."""

    connections: int
    """TCP connections accepted."""
    open_connections: int
    """Of those, still open (a silent server keeps them)."""
    requests: int
    """Complete requests read (head and body), answered or not."""
    good: int
    """Of those, answered well (the good phase, or behaviour ``ok``)."""

    @property
    def hostile(self) -> int:
        return self.requests - self.good


# A node lease as kube-apiserver returns it; 40 s is the kubelet's default nodeLeaseDurationSeconds.
OK_BODY = (
    b'{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"hostile",'
    b'"namespace":"kube-node-lease","resourceVersion":"1"},'
    b'"spec":{"holderIdentity":"hostile","leaseDurationSeconds":40}}'
)
GARBAGE_BYTES = b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe\x01 not http \x80\x81\r\n\r\n"
HUGE_PREFIX = b'{"kind":"Status","apiVersion":"v1","status":"Success","message":"'
HUGE_SUFFIX = b'"}'
HUGE_CHUNK_BYTES = 64 * 1024  # one write per 64 KiB: asyncio's default high-water mark
MAX_REQUESTS_PER_CONNECTION = 1_000_000
"""Then the server closes the connection after the answer (nginx does so after 1000 by default;
a million keeps reconnects out of any run a test makes)."""
MAX_CHUNKS = 100_000  # chunks in one chunked request body; a request has a handful
MAX_HEADER_LINES = 200  # lines in a request head or trailer; a client sends a dozen
DEFAULT_BODY_BYTES = 50_000_000
DEFAULT_RETRY_AFTER_S = 3600


def _status_body(code: int, reason: str, message: str, extra: str = "") -> bytes:
    return (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        f'"message":"hostile test server: {message}","reason":"{reason}",{extra}"code":{code}}}'
    ).encode()


def _head(status: str, length: int, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> tuple[bool, bool]:
    """Read one request, head and body, and return (keep-alive, is HEAD). RFC 9112: Content-Length
    or chunked bodies; empty lines before the request line are skipped (section 2.2)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lstrip(b"\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or len(lines) > MAX_HEADER_LINES:
        raise _BadRequest
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower()] = value.strip().lower()
    connection = fields.get(b"connection", b"")
    if parts[2] == b"HTTP/1.0":
        keep_alive = connection == b"keep-alive"
    else:
        keep_alive = connection != b"close"
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        await _read_chunked(reader)
    else:
        try:
            length = int(fields.get(b"content-length", b"0"))
        except ValueError as exc:
            raise _BadRequest from exc
        await reader.readexactly(length)
    return keep_alive, parts[0] == b"HEAD"


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    for _ in range(MAX_CHUNKS):
        try:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        except ValueError as exc:
            raise _BadRequest from exc
        if size == 0:
            break
        await reader.readexactly(size + 2)
    else:
        raise _BadRequest
    for _ in range(MAX_HEADER_LINES):
        if await reader.readuntil(b"\r\n") == b"\r\n":
            return
    raise _BadRequest


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with SO_LINGER {on, 0}: close() then sends RST instead of FIN (socket(7))."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class HostileHttpServer:
    """An HTTP/1.1 server on loopback that answers with ``behaviour`` after an optional good phase.

    ``async with HostileHttpServer(HttpBehaviour.STATUS_500, good_for_requests=2) as server:``
    then aim a client at ``server.url``; ``server.stats()`` says what it saw.
    """

    def __init__(
        self,
        behaviour: HttpBehaviour | str,
        *,
        good_for_s: float | None = None,
        good_for_requests: int | None = None,
        retry_after_s: int = DEFAULT_RETRY_AFTER_S,
        trickle_interval_s: float = 0.5,
        body_bytes: int = DEFAULT_BODY_BYTES,
        host: str = LOOPBACK,
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        check_loopback(host)
        if body_bytes < len(HUGE_PREFIX) + len(HUGE_SUFFIX):
            raise ValueError(f"body_bytes must be >= {len(HUGE_PREFIX) + len(HUGE_SUFFIX)}")
        self.behaviour = HttpBehaviour(behaviour)
        self.good_first = GoodFirst(good_for_s, good_for_requests)
        self._trickle_interval_ns = int(trickle_interval_s * NS_PER_S)
        self._body_bytes = body_bytes
        self._host = host
        self._requested_port = port
        self._clock = clock or MonotonicClock()
        self._ok = (_head("200 OK", len(OK_BODY)), OK_BODY)
        body_500 = _status_body(500, "InternalError", "internal error")
        self._500 = (_head("500 Internal Server Error", len(body_500)), body_500)
        details = f'"details":{{"retryAfterSeconds":{retry_after_s}}},'
        body_429 = _status_body(429, "TooManyRequests", "too many requests", details)
        retry = f"Retry-After: {retry_after_s}\r\n"
        self._429 = (_head("429 Too Many Requests", len(body_429), retry), body_429)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started_ns = 0
        self._connections = 0
        self._requests = 0
        self._good = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server has not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def requests_received(self) -> int:
        return self._requests

    def stats(self) -> HttpServerStats:
        return HttpServerStats(self._connections, len(self._tasks), self._requests, self._good)

    async def start(self) -> None:
        self._started_ns = self._clock.now_ns()
        self._server = await asyncio.start_server(self._serve, self._host, self._requested_port)

    async def stop(self) -> None:
        """Stop listening and close every connection, silent and trickling ones included."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _answers_well(self) -> bool:
        seen_before = self._requests
        self._requests += 1
        elapsed_ns = self._clock.now_ns() - self._started_ns
        good = self.behaviour is HttpBehaviour.OK or self.good_first.is_good(
            elapsed_ns, seen_before
        )
        self._good += good
        return good

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        try:
            for served in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
                try:
                    keep_alive, is_head = await _read_request(reader)
                except _BadRequest:
                    body = _status_body(400, "BadRequest", "not a request it can read")
                    writer.write(_head("400 Bad Request", len(body)) + body)
                    await writer.drain()
                    return
                if self._answers_well():
                    await self._send(writer, self._ok, is_head)
                    go_on = keep_alive
                else:
                    go_on = await self._answer_hostile(writer, is_head, keep_alive)
                if not go_on or served == MAX_REQUESTS_PER_CONNECTION:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return  # the client went away, or sent a head beyond the stream limit
        finally:
            self._tasks.discard(task)
            writer.close()  # after a reset the transport is already closed: a no-op

    async def _send(
        self, writer: asyncio.StreamWriter, answer: tuple[bytes, bytes], is_head: bool
    ) -> None:
        head, body = answer
        writer.write(head if is_head else head + body)
        await writer.drain()

    async def _answer_hostile(
        self, writer: asyncio.StreamWriter, is_head: bool, keep_alive: bool
    ) -> bool:
        """Answer one request badly; return whether to read another on this connection."""
        match self.behaviour:
            case HttpBehaviour.STATUS_500:
                await self._send(writer, self._500, is_head)
            case HttpBehaviour.STATUS_429:
                await self._send(writer, self._429, is_head)
            case HttpBehaviour.GARBAGE:
                writer.write(GARBAGE_BYTES)
                await writer.drain()
                return False
            case HttpBehaviour.RESET:
                _reset(writer)
                return False
            case HttpBehaviour.SILENCE:
                return True  # keep reading (and counting) until the client gives up
            case HttpBehaviour.TRICKLE:
                await self._trickle(writer, is_head)
            case HttpBehaviour.HUGE_BODY:
                await self._huge_body(writer, is_head)
            case HttpBehaviour.OK:  # pragma: no cover - ok always answers well
                await self._send(writer, self._ok, is_head)
        return keep_alive

    async def _trickle(self, writer: asyncio.StreamWriter, is_head: bool) -> None:
        head, body = self._ok
        writer.write(head)
        await writer.drain()
        if is_head:
            return
        next_ns = self._clock.now_ns()
        for i in range(len(body)):
            next_ns += self._trickle_interval_ns
            await self._clock.sleep_until(next_ns)
            writer.write(body[i : i + 1])
            await writer.drain()

    async def _huge_body(self, writer: asyncio.StreamWriter, is_head: bool) -> None:
        writer.write(_head("200 OK", self._body_bytes))
        if is_head:
            await writer.drain()
            return
        writer.write(HUGE_PREFIX)
        padding = self._body_bytes - len(HUGE_PREFIX) - len(HUGE_SUFFIX)
        chunk = b"x" * min(HUGE_CHUNK_BYTES, padding)
        full, rest = divmod(padding, HUGE_CHUNK_BYTES)
        for _ in range(full):
            writer.write(chunk)
            await writer.drain()
        writer.write(chunk[:rest] + HUGE_SUFFIX)
        await writer.drain()


ProcessKind = Literal["http", "dns"]
START_TIMEOUT_S = 30.0
"""Python, aiohttp and dnspython import in about a second; a busy 2-core box may take longer."""
STOP_GRACE_S = 5.0  # after SIGTERM: closing a few loopback sockets takes milliseconds
PARENT_CHECK_S = 1.0  # how often a hostile process checks that whoever started it still lives
_STDERR_TAIL_BYTES = 2000


class HostileProcess:
    """A hostile server in its own process: where it listens, ``stop()`` and ``kill()``.

    As a context manager it is stopped on exit, and it exits by itself if its parent dies.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], kind: ProcessKind, address: str, log: IO[bytes]
    ) -> None:
        self._proc = proc
        self.kind = kind
        self._address = address
        self._log = log

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (HTTP only)."""
        if self.kind != "http":
            raise RuntimeError("a DNS hostile process has no url: use .addr")
        return self._address

    @property
    def addr(self) -> str:
        """``127.0.0.1:PORT`` (DNS only)."""
        if self.kind != "dns":
            raise RuntimeError("an HTTP hostile process has no addr: use .url")
        return self._address

    @property
    def port(self) -> int:
        return int(self._address.rsplit(":", 1)[1])

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self._proc.poll()

    def wait(self, timeout_s: float) -> int:
        """Wait for it to exit (after ``die_after_s``, say); raise ``subprocess.TimeoutExpired``."""
        return self._proc.wait(timeout_s)

    def kill(self) -> int:
        """SIGKILL, as the OOM killer would: no goodbye on open connections."""
        if self._proc.poll() is None:
            self._proc.kill()
        return self._close(self._proc.wait(STOP_GRACE_S))

    def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM; SIGKILL if it has not exited after ``grace_s``. Returns the exit code."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return self._close(self._proc.wait(STOP_GRACE_S))

    def _close(self, code: int) -> int:
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_hostile_process(
    kind: ProcessKind,
    behaviour: str,
    *,
    timeout_s: float = START_TIMEOUT_S,
    **options: float | bool | None,
) -> HostileProcess:
    """Run ``python -m loadlab.testing.hostile KIND --behaviour BEHAVIOUR`` and wait until it
    listens. ``behaviour`` is an ``HttpBehaviour`` or ``DnsBehaviour`` (or its value).
    ``options`` are its flags with underscores: ``good_for_s=3``, ``die_after_s=2``, ``tcp=True``;
    None or False leaves a flag out. Raises RuntimeError (with the process's stderr) if it does
    not start within ``timeout_s``."""
    cmd = [sys.executable, "-m", "loadlab.testing.hostile", kind, "--behaviour", str(behaviour)]
    cmd += ["--parent-pid", str(os.getpid())]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not None and value is not False:
            cmd += [flag, str(value)]
    # The log outlives this function: HostileProcess owns and closes it.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    try:
        ready = json.loads(read_ready_line(proc, time.monotonic() + timeout_s))
        return HostileProcess(proc, kind, str(ready["url" if kind == "http" else "addr"]), log)
    except (TimeoutError, EOFError, ValueError, KeyError) as exc:
        proc.kill()
        proc.wait(STOP_GRACE_S)
        if proc.stdout is not None:
            proc.stdout.close()
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - _STDERR_TAIL_BYTES))
        tail = log.read().decode(errors="replace").strip()
        log.close()
        raise RuntimeError(f"{' '.join(cmd[2:])} did not start: {tail or exc!r}") from exc


async def _serve_until_signalled(
    server: HostileHttpServer | HostileDnsServer, die_after_s: float | None, parent_pid: int | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def check_parent() -> None:
        if os.getppid() != parent_pid:
            stop.set()  # orphaned (the test run was killed): do not outlive it
        else:
            loop.call_later(PARENT_CHECK_S, check_parent)

    async with server:
        if isinstance(server, HostileHttpServer):
            print(json.dumps({"url": server.url}), flush=True)
        else:
            print(json.dumps({"addr": server.addr}), flush=True)
        if die_after_s is not None:
            # The kernel then closes the sockets as for any killed process; nothing is flushed.
            loop.call_later(die_after_s, os.kill, os.getpid(), signal.SIGKILL)
        if parent_pid is not None:
            check_parent()
        await stop.wait()


def _parser() -> argparse.ArgumentParser:
    from loadlab.testing.hostile_dns import DnsBehaviour  # hostile_dns imports this module

    parser = argparse.ArgumentParser(
        prog="python -m loadlab.testing.hostile",
        description="A misbehaving HTTP or DNS server on loopback, until SIGTERM/SIGINT.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    http = kinds.add_parser("http", help="an HTTP/1.1 server")
    http.add_argument("--behaviour", required=True, choices=[b.value for b in HttpBehaviour])
    http.add_argument("--good-for-requests", type=int)
    http.add_argument("--retry-after-s", type=int, default=DEFAULT_RETRY_AFTER_S)
    http.add_argument("--trickle-interval-s", type=float, default=0.5)
    http.add_argument("--body-bytes", type=int, default=DEFAULT_BODY_BYTES)
    dns = kinds.add_parser("dns", help="a DNS server (UDP, and TCP with --tcp)")
    dns.add_argument("--behaviour", required=True, choices=[b.value for b in DnsBehaviour])
    dns.add_argument("--good-for-queries", type=int)
    dns.add_argument("--tcp", action="store_true", help="also answer over TCP on the same port")
    for sub in (http, dns):
        sub.add_argument("--good-for-s", type=float, help="answer well for this long first")
        sub.add_argument("--host", default=LOOPBACK)
        sub.add_argument("--port", type=int, default=0, help="0: a free port")
        sub.add_argument("--die-after-s", type=float, help="SIGKILL itself this long after ready")
        sub.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    return parser


def main(argv: list[str] | None = None) -> int:
    from loadlab.testing.hostile_dns import HostileDnsServer

    parser = _parser()
    args = parser.parse_args(argv)
    server: HostileHttpServer | HostileDnsServer
    try:
        if args.kind == "http":
            server = HostileHttpServer(
                args.behaviour,
                good_for_s=args.good_for_s,
                good_for_requests=args.good_for_requests,
                retry_after_s=args.retry_after_s,
                trickle_interval_s=args.trickle_interval_s,
                body_bytes=args.body_bytes,
                host=args.host,
                port=args.port,
            )
        else:
            server = HostileDnsServer(
                args.behaviour,
                good_for_s=args.good_for_s,
                good_for_queries=args.good_for_queries,
                tcp=args.tcp,
                host=args.host,
                port=args.port,
            )
    except ValueError as exc:
        parser.error(str(exc))
    runloop.run(_serve_until_signalled(server, args.die_after_s, args.parent_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
