"""The leader's side of ``--workers N``: start the workers, order the phases, merge what they
record.

The leader's session runs unchanged over rigs whose target and recorder stand for the pool:
``PooledTarget`` answers from the workers' latest reports (requests in flight, requests still
unanswered, stray answers) and forwards drains; ``PooledRecorder.rotate`` returns the merge of the
interval snapshots the workers sent since the last rotation. ``PoolMonitor`` makes the
generator-limited verdict consider every worker: its CPU figure is the busiest worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadlab.clock import Clock
from loadlab.engine.selfmon import GeneratorMonitor, GeneratorSample
from loadlab.errors import GeneratorResourceError, LoadlabError
from loadlab.metrics.recorder import IntervalSnapshot, Recorder
from loadlab.session import Rig
from loadlab.targets.base import CompletionSink
from loadlab.wiring import RigSpec, RunTargets, assemble_rig
from loadlab.workers import wire
from loadlab.workers.merge import merge_snapshots

START_TIMEOUT_S = 60.0
"""From spawning the workers to all of them having opened their targets. Not from a reference:
a Python process starts in well under a second here; opening thousands of connections takes a
few; a minute means something is wrong."""
CLOSE_TIMEOUT_S = 30.0
"""How long the leader waits for a worker's final interval before killing it."""


class WorkerFailed(LoadlabError):
    """A worker stopped or reported an error; ``exit_code`` is the worker's own when it had one."""

    def __init__(self, message: str, exit_code: int = GeneratorResourceError.exit_code) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class _TargetReport:
    in_flight: int = 0
    pending: list[tuple[int, int]] = field(default_factory=list)
    fd_exhausted: bool = False
    stray: int = 0


@dataclass
class _Link:
    """One worker: its process, its connection and what it last reported."""

    index: int
    process: asyncio.subprocess.Process
    log: Path
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    snapshots: dict[str, list[IntervalSnapshot]] = field(default_factory=dict)
    reports: dict[str, _TargetReport] = field(default_factory=dict)
    last_end_ns: int = 0
    cpu_percent: float = 0.0
    rss_mb: float = 0.0
    lag_p99_ms: float = 0.0
    """Agent workers: their event loop's lag p99 since the warm-up."""
    lookup_rows: list[list[Any]] = field(default_factory=list)
    """Agent workers: lookups by send second not yet taken (``LookupCounts.changes``)."""
    tallies: dict[str, dict[str, int]] = field(default_factory=dict)
    """Agent workers: what their agents counted, as of their last interval."""
    closed: bool = False

    def tail(self) -> str:
        """The last line the worker wrote to stderr, to name why it stopped."""
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1][:200]
        return ""


class WorkerPool:
    """``count`` worker processes on this machine, each connected back to the leader."""

    def __init__(self, count: int, clock: Clock, *, interval_ns: int) -> None:
        self.count = count
        self.clock = clock
        self.interval_ns = interval_ns
        self.links: list[_Link] = []
        self.failure: WorkerFailed | None = None
        self.on_failure: list[Any] = []
        """Callbacks told the first failure (the session's ``fail``)."""
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connected: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._readers: list[asyncio.Task[None]] = []
        self._interval = asyncio.Event()

    # -- start -------------------------------------------------------------------------------

    async def start(
        self,
        *,
        profile: dict[str, Any],
        targets: RunTargets,
        origin_ns: int,
        epoch_s: float,
        out_dir: Path,
    ) -> dict[str, list[str]]:
        """Spawn the workers of a request mix, hand each its segment, wait until all have opened
        their targets; return the operation names of each target, as the workers opened them."""
        readies = await self.spawn(
            out_dir,
            {
                "profile": profile,
                "api_url": targets.api_url,
                "dns_addr": targets.dns_addr,
                "real": targets.real,
                "access": targets.recipe.as_dict() if targets.recipe is not None else None,
                "origin_ns": origin_ns,
                "epoch_s": epoch_s,
            },
        )
        # Every worker opened the same targets: the last one's names stand for all.
        return {str(k): [str(n) for n in v] for k, v in readies[-1]["targets"].items()}

    async def spawn(self, out_dir: Path, start: dict[str, Any]) -> list[dict[str, Any]]:
        """Spawn the workers, send each the ``start`` message (with its own folder, the
        interval and the leader's clock added), and return each one's ``ready`` message, in
        worker order, once all have opened their targets."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connected.put((reader, writer))

        self._server = await asyncio.start_server(
            accept, "127.0.0.1", 0, limit=wire.MAX_MESSAGE_BYTES
        )
        port = self._server.sockets[0].getsockname()[1]
        for i in range(self.count):
            folder = out_dir / "workers" / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "stderr.log"
            with log.open("wb") as err:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "loadlab.workers.worker",
                    "--leader", f"127.0.0.1:{port}", "--index", str(i), "--count", str(self.count),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err,
                )  # fmt: skip
            self.links.append(_Link(i, process, log))
        try:
            return await asyncio.wait_for(self._handshake(start, out_dir), START_TIMEOUT_S)
        except TimeoutError:
            raise WorkerFailed(
                f"the {self.count} workers did not all start within {START_TIMEOUT_S:g} s"
                f"{self._why_stopped()}"
            ) from None

    async def _handshake(self, start: dict[str, Any], out_dir: Path) -> list[dict[str, Any]]:
        for _ in range(self.count):
            reader, writer = await self._next_connection()
            hello = await wire.receive(reader)
            if hello is None or hello["type"] != "hello":
                raise WorkerFailed("a worker connected but did not say hello")
            link = self.links[int(hello["index"])]
            link.reader, link.writer = reader, writer
        for link in self.links:
            assert link.writer is not None
            await wire.send(
                link.writer,
                {
                    **start,
                    "type": "start",
                    "interval_ns": self.interval_ns,
                    "out_dir": str(out_dir / "workers" / str(link.index)),
                    "leader_now_ns": self.clock.now_ns(),
                },
            )
        readies = []
        for link in self.links:
            assert link.reader is not None
            ready = await wire.receive(link.reader)
            if ready is None:
                raise WorkerFailed(f"worker {link.index + 1} stopped while opening its targets")
            if ready["type"] == "error":
                raise _failure(link, ready["error"])
            readies.append(ready)
        self._readers = [asyncio.ensure_future(self._read(link)) for link in self.links]
        return readies

    async def _next_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        got = asyncio.ensure_future(self._connected.get())
        exits = [asyncio.ensure_future(link.process.wait()) for link in self.links]
        try:
            await asyncio.wait([got, *exits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in exits:
                task.cancel()
        if not got.done():
            got.cancel()
            raise WorkerFailed(f"a worker exited before connecting{self._why_stopped()}")
        return got.result()

    def _why_stopped(self) -> str:
        for link in self.links:
            if link.process.returncode is not None:
                return f": worker {link.index + 1} exited ({link.process.returncode}) {link.tail()}"
        return ""

    # -- the run -----------------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        assert link.reader is not None
        try:
            while (message := await wire.receive(link.reader)) is not None:
                self._on_message(link, message)
        except (ConnectionError, ValueError) as exc:
            self._fail(WorkerFailed(f"worker {link.index + 1}: lost its connection ({exc})"))
        if not link.closed:
            await asyncio.sleep(0.1)  # let it exit, to name its exit status
            code = link.process.returncode
            status = f" (exit {code})" if code is not None else ""
            self._fail(
                WorkerFailed(
                    f"worker {link.index + 1} of {self.count} stopped during the run{status}: "
                    f"{link.tail() or 'no message'}"
                )
            )
        # Orders waiting on this worker end; the failure itself stops the run through the
        # session (``on_failure``), which then judges and writes what was measured.
        for future in link.waiting.values():
            if not future.done():
                future.set_result(None)

    def _on_message(self, link: _Link, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "done":
            future = link.waiting.pop(int(message["id"]), None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == "interval":
            for name, report in message["targets"].items():
                link.snapshots.setdefault(name, []).append(
                    wire.snapshot_from_wire(report["snapshot"])
                )
                link.reports[name] = _TargetReport(
                    in_flight=int(report["in_flight"]),
                    pending=wire.pending_from_wire(report["pending"]),
                    fd_exhausted=bool(report["fd_exhausted"]),
                    stray=int(report["stray"]),
                )
            link.last_end_ns = int(message["end_ns"])
            link.cpu_percent = float(message["cpu_percent"])
            link.rss_mb = float(message["rss_mb"])
            if "agents" in message:
                agents = message["agents"]
                link.lag_p99_ms = float(agents["lag_p99_ms"])
                link.lookup_rows += agents["lookups"]
                link.tallies = agents["tallies"]
            if message.get("error"):
                self._fail(_failure(link, message["error"]))
            self._interval.set()
        elif kind == "error":
            self._fail(_failure(link, message["error"]))

    def _fail(self, failure: WorkerFailed) -> None:
        if self.failure is None:
            self.failure = failure
            for callback in self.on_failure:
                callback(failure)

    async def order(self, message: dict[str, Any]) -> None:
        """Send one command to every worker and wait until each has done it (or failed: the
        failure is the session's to act on)."""
        if self.failure is not None:
            return
        futures = []
        for link in self.links:
            assert link.writer is not None
            command_id = next(self._ids)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            link.waiting[command_id] = future
            futures.append(future)
            try:
                await wire.send(link.writer, {**message, "id": command_id})
            except ConnectionError:
                future.set_result(None)  # its reader names the failure
        await asyncio.gather(*futures)

    async def collect(self, boundary_ns: int) -> None:
        deadline_ns = boundary_ns + self.interval_ns
        while self.failure is None and any(
            link.last_end_ns < boundary_ns - self.interval_ns // 2 for link in self.links
        ):
            self._interval.clear()
            wait_s = (deadline_ns - self.clock.now_ns()) / 1e9
            if wait_s <= 0:
                return  # a late worker's interval is merged into the next one: nothing is lost
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._interval.wait(), wait_s)

    async def open_loop(self, target: str, rate_per_s: float, start_ns: int, end_ns: int) -> None:
        await self.order(
            {
                "type": "open_loop",
                "target": target,
                "rate_per_s": rate_per_s,
                "start_ns": start_ns,
                "end_ns": end_ns,
            }
        )

    async def closed(self, target: str, end_ns: int) -> None:
        await self.order({"type": "closed", "target": target, "end_ns": end_ns})

    async def drain(self, target: str, deadline_ns: int) -> None:
        await self.order({"type": "drain", "target": target, "deadline_ns": deadline_ns})

    def take(self, target: str) -> list[IntervalSnapshot]:
        """Every snapshot of ``target`` received since the last call."""
        taken: list[IntervalSnapshot] = []
        for link in self.links:
            taken += link.snapshots.pop(target, [])
        return taken

    def report(self, target: str) -> list[_TargetReport]:
        return [link.reports.get(target, _TargetReport()) for link in self.links]

    # -- the end -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Ask each worker to close its targets and send its last interval, then reap it."""
        for link in self.links:
            link.closed = True  # from here on, a worker exiting is the plan, not a failure
        with contextlib.suppress(LoadlabError, ConnectionError):
            await asyncio.wait_for(self.order({"type": "close"}), CLOSE_TIMEOUT_S)
        for link in self.links:
            if link.writer is not None:
                link.writer.close()
        for link in self.links:
            try:
                await asyncio.wait_for(link.process.wait(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    link.process.kill()
                await link.process.wait()
        for task in self._readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()

    async def kill(self) -> None:
        """Stop every worker at once (the leader is failing before the run started)."""
        for link in self.links:
            link.closed = True
            if link.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    link.process.kill()
                await link.process.wait()
        if self._server is not None:
            self._server.close()


def _failure(link: _Link, error: dict[str, Any]) -> WorkerFailed:
    return WorkerFailed(
        f"worker {link.index + 1}: {error['message']}", int(error.get("exit_code", 4))
    )


class PooledRecorder(Recorder):
    """The leader's recorder of one target: nothing is recorded here; ``rotate`` merges what the
    workers recorded since the previous rotation."""

    def __init__(self, pool: WorkerPool, target: str, op_names: Sequence[str], start_ns: int):
        super().__init__(target, op_names, start_ns=start_ns)
        self._pool = pool
        self._template = super().rotate(start_ns)
        self._last_end_ns = start_ns

    def rotate(self, now_ns: int) -> IntervalSnapshot:
        snaps = self._pool.take(self.target)
        merged = merge_snapshots(
            snaps, template=self._template, start_ns=self._last_end_ns, end_ns=now_ns
        )
        self._last_end_ns = now_ns
        return merged


class PooledTarget:
    """The leader's stand-in for one target that the workers really open."""

    def __init__(self, pool: WorkerPool, name: str, op_names: Sequence[str]) -> None:
        self._pool = pool
        self.name = name
        self.op_names = tuple(op_names)

    async def open(self, sink: CompletionSink) -> None:
        pass  # the workers opened theirs

    def submit(self, op: int, intended_ns: int) -> None:
        raise RuntimeError("the leader sends nothing itself: its workers do")

    @property
    def in_flight(self) -> int:
        return sum(r.in_flight for r in self._pool.report(self.name))

    def pending_intended_ns(self) -> list[tuple[int, int]]:
        return [p for r in self._pool.report(self.name) for p in r.pending]

    @property
    def fd_exhausted(self) -> bool:
        return any(r.fd_exhausted for r in self._pool.report(self.name))

    @fd_exhausted.setter
    def fd_exhausted(self, value: bool) -> None:
        raise AttributeError("the workers report it")

    @property
    def stray(self) -> int:
        return sum(r.stray for r in self._pool.report(self.name))

    @stray.setter
    def stray(self, value: int) -> None:
        raise AttributeError("the workers report it")

    async def drain(self, deadline_ns: int) -> None:
        await self._pool.drain(self.name, deadline_ns)

    async def close(self) -> None:
        pass  # the pool closes the workers, once, for every target


class PoolMonitor(GeneratorMonitor):
    """The workers' resource use, as the workers measured it: CPU% of the busiest worker (one
    saturated worker limits the run as one saturated process would), RSS summed."""

    def __init__(self, pool: WorkerPool, clock: Clock) -> None:
        super().__init__(clock)
        self._pool = pool

    def sample(self) -> GeneratorSample:
        links = self._pool.links
        sample = GeneratorSample(
            self._clock.now_ns(),
            max((link.cpu_percent for link in links), default=0.0),
            sum(link.rss_mb for link in links),
        )
        if len(self.samples) < self._max_samples:
            self.samples.append(sample)
        return sample


def pooled_rigs(
    pool: WorkerPool,
    specs: Sequence[RigSpec],
    op_names: dict[str, list[str]],
    *,
    start_ns: int,
    epoch_s: float,
    out_dir: Path,
) -> list[Rig]:
    rigs = []
    for spec in specs:
        names = op_names.get(spec.name, spec.op_names)
        recorder = PooledRecorder(pool, spec.name, names, start_ns)
        target = PooledTarget(pool, spec.name, names)
        rigs.append(assemble_rig(spec, target, recorder, epoch_s=epoch_s, out_dir=out_dir))
    return rigs
