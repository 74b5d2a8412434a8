"""A worker's part of an agent scenario (``loadlab run --workers N`` with ``agents:``).

The leader's ``start`` names the size; this worker builds every agent of it and keeps its
segment (``loadlab.sweep_load.segment_agents``), checks that this process can hold their sockets,
and says ``ready`` with the agent kinds, their operations and how many agents it runs. On
``run`` it runs them on the leader's schedule (origin and end in the leader's clock), sending
one interval per boundary: a snapshot per kind, the lookups counted by send second since the
last interval, its event loop's lag and its agents' own tallies. ``close`` stops a run still
going; its last interval goes out before the ``done``. It also writes its own hlogs under the
folder the leader names, so a worker's record survives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadlab.clock import MonotonicClock
from loadlab.errors import InternalError, LoadlabError
from loadlab.metrics.hlog import TargetHlogs
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.profile import validate_profile
from loadlab.scenario import Placement
from loadlab.sweep_load import AgentLoad
from loadlab.targets.cluster import ClusterAccess
from loadlab.workers import wire
from loadlab.workers.segment import Segment
from loadlab.workers.wire import error_dict, worker_access


class AgentWorker:
    def __init__(
        self,
        segment: Segment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clock: MonotonicClock,
        offset_ns: int,
    ) -> None:
        self.segment = segment
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.offset_ns = offset_ns
        """Leader clock minus this worker's clock."""
        self.load: AgentLoad | None = None
        self.hlogs: dict[str, TargetHlogs] = {}
        self.running: asyncio.Task[None] | None = None
        self.access: ClusterAccess | None = None

    async def run(self, start: dict[str, Any]) -> None:
        try:
            self.access = await worker_access(start)
            load = self._open(start)
        except LoadlabError as exc:
            await wire.send(self.writer, {"type": "error", "error": error_dict(exc)})
            return
        self.load = load
        out_dir = Path(start["out_dir"])  # the leader made it
        epoch_s = time.time()
        self.hlogs = {k: TargetHlogs(out_dir, k, start_time_epoch_s=epoch_s) for k in load.ops}
        await wire.send(
            self.writer,
            {
                "type": "ready",
                "targets": {kind: list(names) for kind, names in load.ops.items()},
                "agents": load.agent_count,
            },
        )
        try:
            while (message := await wire.receive(self.reader)) is not None:
                if message["type"] == "run":
                    self.running = asyncio.ensure_future(self._run(start, message))
                elif message["type"] == "close":
                    load.stop()
                    if self.running is not None:
                        with contextlib.suppress(Exception):
                            await self.running
                    await wire.send(self.writer, {"type": "done", "id": message["id"]})
                    return
        finally:
            load.stop()
            if self.running is not None and not self.running.done():
                self.running.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.running
            for hlog in self.hlogs.values():
                with contextlib.suppress(OSError):
                    hlog.close()

    def _open(self, start: dict[str, Any]) -> AgentLoad:
        profile = validate_profile(
            start["profile"], source=f"the leader's profile ({self.segment.label})"
        )
        load = AgentLoad(
            profile,
            int(start["size"]),
            clock=self.clock,
            quick=bool(start["quick"]),
            with_pod_dns=bool(start["with_pod_dns"]),
            placement=Placement.from_dict(start["placement"]) if start.get("placement") else None,
            segment=self.segment,
            api_url=start.get("api_url"),
            dns_addr=start.get("dns_addr"),
            access=self.access,
        )
        load.check_sockets()
        return load

    async def _run(self, start: dict[str, Any], message: dict[str, Any]) -> None:
        assert self.load is not None
        load = self.load
        try:
            await load.run(
                int(message["start_ns"]) - self.offset_ns,
                int(message["until_ns"]) - self.offset_ns,
                interval_ns=int(start["interval_ns"]),
                on_interval=self._send_interval,
            )
        except (ConnectionError, asyncio.CancelledError):
            raise  # the leader is gone, or closing us: nobody to tell
        except LoadlabError as exc:
            await wire.send(self.writer, {"type": "error", "error": error_dict(exc)})
            return
        except Exception as exc:  # a bug in an agent: said to the leader, traceback kept here
            traceback.print_exc(file=sys.stderr)
            await wire.send(self.writer, {"type": "error", "error": error_dict(InternalError(
                f"internal error ({type(exc).__name__}: {exc}); the traceback is in this "
                "worker's stderr.log"
            ))})  # fmt: skip
            return
        await wire.send(self.writer, {"type": "done", "id": message["id"]})

    async def _send_interval(
        self, now_ns: int, snaps: Mapping[str, IntervalSnapshot], final: bool
    ) -> None:
        assert self.load is not None
        load = self.load
        sample = load.monitor.sample()
        for kind, snap in snaps.items():
            with contextlib.suppress(OSError):  # the wire is the record; the local copy a spare
                self.hlogs[kind].write(snap)
        await wire.send(
            self.writer,
            {
                "type": "interval",
                "final": final,
                "end_ns": now_ns + self.offset_ns,
                "cpu_percent": sample.cpu_percent,
                "rss_mb": sample.rss_mb,
                "targets": {
                    kind: {
                        "snapshot": wire.snapshot_to_wire(snap, self.offset_ns),
                        "in_flight": 0,
                        "pending": [],
                        "fd_exhausted": False,
                        "stray": 0,
                    }
                    for kind, snap in snaps.items()
                },
                "agents": {
                    "lag_p99_ms": load.lag.p99_ms(),
                    "lookups": load.lookups.changes() if load.lookups is not None else [],
                    "tallies": load.tallies(),
                },
                "error": None,
            },
        )
