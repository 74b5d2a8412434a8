"""What leader and workers say to each other: one JSON object per line over TCP.

Interval snapshots travel as their hlog payloads (``HdrHistogram.encode()`` is already base64
text), with times on the leader's clock: a worker maps its own clock onto the leader's with the
offset it measured at hello, so a worker may run on another machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from loadlab.errors import LoadlabError
from loadlab.metrics.recorder import IntervalSnapshot
from loadlab.targets.base import Outcome
from loadlab.targets.cluster import AccessRecipe, ClusterAccess

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""A line longer than this is a broken peer. Not from a reference: an interval of a 100-op mix
with every outcome is well under a megabyte; the pending list of a silent server at 100k/s for
10 s is tens of megabytes."""

Message = dict[str, Any]


async def send(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None when the peer closed the connection."""
    line = await reader.readline()
    if not line:
        return None
    message = json.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"not a loadlab worker message: {line[:80]!r}")
    return message


def snapshot_to_wire(snap: IntervalSnapshot, offset_ns: int) -> Message:
    """``offset_ns`` is added to every time: the sender's clock onto the receiver's."""
    return {
        "target": snap.target,
        "op_names": list(snap.op_names),
        "ok_outcomes": [sorted(int(o) for o in ok) for ok in snap.ok_outcomes],
        "origin_ns": snap.origin_ns + offset_ns,
        "start_ns": snap.start_ns + offset_ns,
        "end_ns": snap.end_ns + offset_ns,
        "sent": snap.sent,
        "skipped": snap.skipped,
        "completed": snap.completed,
        "errors": snap.errors,
        "keys": [
            [
                op,
                int(outcome),
                n,
                snap.corrected[(op, outcome)].decode("ascii"),
                snap.uncorrected[(op, outcome)].decode("ascii"),
            ]
            for (op, outcome), n in snap.counts.items()
        ],
        "lag": snap.lag.decode("ascii"),
    }


def snapshot_from_wire(data: Message) -> IntervalSnapshot:
    keys = [(int(op), Outcome(int(outcome))) for op, outcome, *_ in data["keys"]]
    return IntervalSnapshot(
        target=str(data["target"]),
        op_names=tuple(str(n) for n in data["op_names"]),
        ok_outcomes=tuple(frozenset(Outcome(int(o)) for o in ok) for ok in data["ok_outcomes"]),
        origin_ns=int(data["origin_ns"]),
        start_ns=int(data["start_ns"]),
        end_ns=int(data["end_ns"]),
        sent=int(data["sent"]),
        skipped=int(data["skipped"]),
        completed=int(data["completed"]),
        errors=int(data["errors"]),
        counts={k: int(row[2]) for k, row in zip(keys, data["keys"], strict=True)},
        corrected={
            k: str(row[3]).encode("ascii") for k, row in zip(keys, data["keys"], strict=True)
        },
        uncorrected={
            k: str(row[4]).encode("ascii") for k, row in zip(keys, data["keys"], strict=True)
        },
        lag=str(data["lag"]).encode("ascii"),
    )


def pending_to_wire(pending: list[tuple[int, int]], offset_ns: int) -> list[list[int]]:
    """Requests still unanswered as (op, intended time) pairs, grouped by op and millisecond
    with a count: a silent server leaves thousands pending, and a millisecond is far below any
    SLO the ages are judged against."""
    groups: dict[tuple[int, int], int] = {}
    for op, intended_ns in pending:
        key = (op, (intended_ns + offset_ns) // 1_000_000)
        groups[key] = groups.get(key, 0) + 1
    return [[op, ms, n] for (op, ms), n in groups.items()]


def pending_from_wire(rows: list[list[int]]) -> list[tuple[int, int]]:
    return [(int(op), int(ms) * 1_000_000) for op, ms, n in rows for _ in range(int(n))]


async def worker_access(start: Mapping[str, Any]) -> ClusterAccess | None:
    """The run's credentials, rebuilt by this worker from the leader's recipe (the same
    kubeconfig context, allowlist checked again, or the same tokens file): credentials
    themselves never travel between processes."""
    recipe = start.get("access")
    return None if not recipe else await AccessRecipe.from_dict(recipe).build()


def error_dict(exc: LoadlabError | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    return {"class": type(exc).__name__, "exit_code": exc.exit_code, "message": str(exc)}
