"""A worker of ``loadlab run --workers N``: generates its segment of the load the leader orders.

Started by the leader (``python -m loadlab.workers.worker --leader HOST:PORT --index I --count
N``), it connects, says hello, receives the resolved profile and the targets, and opens its own
share of the connections (an agent scenario's worker is ``loadlab.workers.agent_worker``). Then
it sends one interval snapshot per target on every interval boundary of the leader's clock, and
runs each phase command it receives. It writes its own interval files to the folder the leader
names (so a worker's record survives it), and exits when the leader says ``close``, closes the
connection or goes away: a worker never outlives its run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from loadlab import runloop
from loadlab.clock import MonotonicClock
from loadlab.engine.selfmon import GeneratorMonitor
from loadlab.errors import LoadlabError
from loadlab.metrics.timeline import TimelineWriter
from loadlab.profile import Profile, validate_profile
from loadlab.progress import NullProgress
from loadlab.session import Rig, Session
from loadlab.wiring import RunTargets, open_rigs
from loadlab.workers import wire
from loadlab.workers.agent_worker import AgentWorker
from loadlab.workers.segment import Segment
from loadlab.workers.wire import error_dict, worker_access

HELLO_TIMEOUT_S = 30.0
"""How long a worker waits for the leader's start after connecting; the leader sends it as soon
as every worker has said hello, so this only bounds a leader that hung."""


def segment_profile(raw: dict[str, Any], segment: Segment) -> Profile:
    """The profile as this worker runs it: its share of the connections and sockets (at least
    one each), and a seed of its own so that workers' random streams differ."""
    raw = dict(raw)
    if raw.get("api"):
        api = dict(raw["api"])
        api["connections"] = segment.share(int(api["connections"]), at_least=1)
        raw["api"] = api
    if raw.get("dns"):
        dns = dict(raw["dns"])
        dns["sockets"] = segment.share(int(dns["sockets"]), at_least=1)
        raw["dns"] = dns
    traffic = dict(raw["load"] if "load" in raw else raw["traffic"])
    traffic["seed"] = segment.seed(int(traffic.get("seed", 1)))
    raw["load" if "load" in raw else "traffic"] = traffic
    return validate_profile(raw, source=f"the leader's profile ({segment.label})")


class Worker:
    def __init__(
        self,
        segment: Segment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.segment = segment
        self.reader = reader
        self.writer = writer
        self.clock = MonotonicClock()
        self.offset_ns = 0
        """Leader clock minus this worker's clock."""
        self.session: Session | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.k = 0

    async def run(self) -> None:
        await wire.send(self.writer, {"type": "hello", "index": self.segment.index})
        start = await asyncio.wait_for(wire.receive(self.reader), HELLO_TIMEOUT_S)
        if start is None or start["type"] != "start":
            return
        self.offset_ns = int(start["leader_now_ns"]) - self.clock.now_ns()
        if start.get("mode") == "agents":
            agents = AgentWorker(self.segment, self.reader, self.writer, self.clock, self.offset_ns)
            await agents.run(start)
            return
        try:
            session = await self._open(start)
        except LoadlabError as exc:
            await self._error(exc)
            return
        self.session = session
        await wire.send(
            self.writer,
            {"type": "ready", "targets": {r.name: list(r.recorder.op_names) for r in session.rigs}},
        )
        ticker = asyncio.ensure_future(self._tick(session))
        try:
            await self._serve(session)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for task in list(self.tasks):
                task.cancel()
            for rig in session.rigs:
                with contextlib.suppress(Exception):
                    await rig.target.close()

    async def _open(self, start: dict[str, Any]) -> Session:
        profile = segment_profile(start["profile"], self.segment)
        out_dir = Path(start["out_dir"])  # the leader made it
        origin_ns = self.local(int(start["origin_ns"]))
        targets = RunTargets(
            start.get("api_url"),
            start.get("dns_addr"),
            access=await worker_access(start),
            real=bool(start["real"]),
        )
        rigs, mixes = await open_rigs(
            profile,
            targets,
            clock=self.clock,
            start_ns=origin_ns,
            epoch_s=float(start["epoch_s"]),
            out_dir=out_dir,
        )
        timeline = TimelineWriter(
            out_dir / "timeline.csv",
            [r.name for r in rigs],
            {r.name: r.recorder.op_names for r in rigs},
        )
        return Session(
            profile=profile,
            clock=self.clock,
            rigs=rigs,
            timeline=timeline,
            out_dir=out_dir,
            progress=NullProgress(),
            monitor=GeneratorMonitor(self.clock),
            start_ns=origin_ns,
            interval_ns=int(start["interval_ns"]),
            mixes=mixes,
            segment=self.segment,
        )

    def local(self, leader_ns: int) -> int:
        return leader_ns - self.offset_ns

    async def _tick(self, session: Session) -> None:
        while True:
            boundary = session.next_boundary_ns(self.clock.now_ns())
            await self.clock.sleep_until(boundary)
            await self._send_interval(session, self.clock.now_ns())

    async def _send_interval(self, session: Session, now_ns: int, *, final: bool = False) -> None:
        session.write_safely(lambda: session.rotate_all(now_ns))
        sample = session.monitor.samples[-1] if session.monitor.samples else None
        await wire.send(
            self.writer,
            {
                "type": "interval",
                "final": final,
                "end_ns": now_ns + self.offset_ns,
                "cpu_percent": sample.cpu_percent if sample else 0.0,
                "rss_mb": sample.rss_mb if sample else 0.0,
                "targets": {rig.name: self._target_report(rig) for rig in session.rigs},
                "error": error_dict(session.fatal),
            },
        )

    def _target_report(self, rig: Rig) -> dict[str, Any]:
        return {
            "snapshot": wire.snapshot_to_wire(rig.snapshots[-1], self.offset_ns),
            "in_flight": rig.target.in_flight,
            "pending": wire.pending_to_wire(rig.target.pending_intended_ns(), self.offset_ns),
            "fd_exhausted": rig.target.fd_exhausted,
            "stray": rig.target.stray,
        }

    async def _serve(self, session: Session) -> None:
        rigs = {rig.name: rig for rig in session.rigs}
        while (message := await wire.receive(self.reader)) is not None:
            kind = message["type"]
            if kind == "close":
                for rig in session.rigs:
                    with contextlib.suppress(Exception):
                        await rig.target.close()
                await self._send_interval(session, self.clock.now_ns(), final=True)
                for rig in session.rigs:
                    session.write_safely(rig.hlogs.close)
                session.write_safely(session.timeline.close)
                await wire.send(self.writer, {"type": "done", "id": message["id"]})
                return
            rig = rigs[message["target"]]
            task = asyncio.ensure_future(self._command(session, rig, message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _command(self, session: Session, rig: Rig, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "open_loop":
            start_ns, end_ns = self.local(message["start_ns"]), self.local(message["end_ns"])
            await session.open_loop(rig, float(message["rate_per_s"]), start_ns, end_ns)
        elif kind == "closed":
            await session._closed(rig, self.local(message["end_ns"]))
        elif kind == "drain":
            await rig.target.drain(self.local(message["deadline_ns"]))
        await wire.send(self.writer, {"type": "done", "id": message["id"]})

    async def _error(self, exc: LoadlabError) -> None:
        await wire.send(self.writer, {"type": "error", "error": error_dict(exc)})


async def _main(leader: str, segment: Segment) -> int:
    host, _, port = leader.rpartition(":")
    reader, writer = await asyncio.open_connection(
        host.strip("[]"), int(port), limit=wire.MAX_MESSAGE_BYTES
    )
    try:
        await Worker(segment, reader, writer).run()
    except (ConnectionError, asyncio.IncompleteReadError):
        return 1  # the leader went away: nothing to report to
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadlab.workers.worker",
        description="A loadlab worker; started by `loadlab run --workers N`, not by hand.",
    )
    parser.add_argument("--leader", required=True, metavar="HOST:PORT")
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--count", required=True, type=int)
    args = parser.parse_args(argv)
    # The leader decides when the run stops; a Ctrl-C on the terminal reaches the whole process
    # group, and the leader then closes each worker in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runloop.raise_open_file_limit()
    return runloop.run(_main(args.leader, Segment(args.index, args.count)))


if __name__ == "__main__":
    sys.exit(main())
