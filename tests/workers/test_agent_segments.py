"""An agent scenario's segments and the leader's sum of its workers' lookups: pure, no process."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadlab.agents.base import Agent
from loadlab.metrics.ledger import LookupCounts
from loadlab.profile import validate_profile
from loadlab.scenario import build_agents
from loadlab.sweep_load import agent_tallies, segment_agents
from loadlab.workers.segment import Segment

PROFILE = {
    "name": "segments",
    "agents": {
        "kubelet": {"start_spread_s": 5},
        "telemetry": {},
        "pod_dns": {"nodes": 7, "pods_per_node": 2},
    },
    "sizes": [50],
}


def _agents(size: int) -> list[Agent]:
    profile = validate_profile(PROFILE, source="test")
    assert profile.agents is not None
    return build_agents(profile.agents, size, steady_s=0.0, wall_offset_ns=0)


@pytest.mark.parametrize(("size", "count"), [(50, 2), (50, 3), (7, 4), (1, 2)])
def test_the_workers_segments_hold_every_agent_once(size: int, count: int) -> None:
    agents = _agents(size)
    parts = [segment_agents(agents, Segment(i, count)) for i in range(count)]
    assert sorted(id(a) for p in parts for a in p) == sorted(id(a) for a in agents)
    for kind in {a.kind for a in agents}:
        per_worker = [sum(1 for a in p if a.kind == kind) for p in parts]
        assert max(per_worker) - min(per_worker) <= 1, (kind, per_worker)


def test_a_nodes_agents_go_to_one_worker() -> None:
    # Worker i of n runs nodes i, i+n, ...: a node's kubelet, telemetry agent and pods together.
    agents = _agents(50)
    for i in range(3):
        nodes = {
            kind: {_node(a) for a in segment_agents(agents, Segment(i, 3)) if a.kind == kind}
            for kind in ("kubelet", "telemetry", "pod-dns")
        }
        assert nodes["kubelet"] == nodes["telemetry"] == set(range(i, 50, 3))
        assert nodes["pod-dns"] == set(range(i, 7, 3))


def _node(agent: Agent) -> int:
    inner = getattr(agent, "agent", agent)
    return int(getattr(inner, "node_index"))  # noqa: B009 - kubelets, telemetry and pods have it


def test_tallies_of_the_segments_add_up_to_the_whole() -> None:
    agents = _agents(20)
    whole = agent_tallies(agents)
    parts = [agent_tallies(segment_agents(agents, Segment(i, 2))) for i in range(2)]
    for kind, counts in whole.items():
        for name, n in counts.items():
            assert sum(p.get(kind, {}).get(name, 0) for p in parts) == n


def test_lookups_sent_in_pieces_add_up_to_the_same_seconds() -> None:
    rng = random.Random(7)
    single = LookupCounts(start_ns=0)
    workers = [LookupCounts(start_ns=0) for _ in range(3)]
    leader = LookupCounts(start_ns=0)
    for step in range(40):
        for _ in range(rng.randrange(30)):
            second, ok = rng.randrange(max(1, step // 2), step + 2), rng.random() < 0.8
            label = rng.choice(["servfail", "timeout", "nxdomain"])
            single.count(second, ok, label)
            rng.choice(workers).count(second, ok, label)
        if step % 3 == 0:  # an interval: each worker sends what changed since its last one
            for worker in workers:
                leader.add(worker.changes())
    for worker in workers:
        leader.add(worker.changes())
        assert worker.changes() == []  # nothing is sent twice
    assert leader.seconds() == single.seconds()
    assert leader.seconds(since_ns=2_000_000_000) == single.seconds(since_ns=2_000_000_000)


def test_a_bug_in_an_agent_workers_run_reaches_the_leader_as_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An agent that raises inside a worker is a bug in loadlab: the worker must say so to its
    # leader (who ends the run with it) rather than leave the leader waiting for intervals.
    import asyncio

    from loadlab.clock import MonotonicClock
    from loadlab.errors import EXIT_INTERNAL
    from loadlab.sweep_load import AgentLoad
    from loadlab.workers import wire
    from loadlab.workers.agent_worker import AgentWorker

    async def broken_run(self: AgentLoad, *args: object, **kwargs: object) -> None:
        raise RuntimeError("an agent's flow raised")

    monkeypatch.setattr(AgentLoad, "run", broken_run)

    async def go(out_dir: str) -> dict[str, object]:
        """A leader on loopback that orders one run and keeps the worker's next message."""
        got: asyncio.Queue[dict[str, object]] = asyncio.Queue()

        async def leader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ready = await wire.receive(reader)
            assert ready is not None
            assert ready["type"] == "ready"
            await wire.send(writer, {"type": "run", "id": 1, "start_ns": 0, "until_ns": 1})
            message = await wire.receive(reader)
            assert message is not None
            await got.put(message)
            writer.close()

        server = await asyncio.start_server(leader, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        worker = AgentWorker(Segment(0, 2), reader, writer, MonotonicClock(), offset_ns=0)
        await asyncio.wait_for(
            worker.run({"type": "start", "mode": "agents", "profile": PROFILE, "size": 4,
                        "quick": False, "with_pod_dns": False, "out_dir": out_dir,
                        "interval_ns": 1_000_000_000}),
            timeout=10,
        )  # fmt: skip
        writer.close()
        server.close()
        return await asyncio.wait_for(got.get(), timeout=1)

    message = asyncio.run(go(str(tmp_path)))
    assert message["type"] == "error", message
    error = message["error"]
    assert isinstance(error, dict)
    assert error["exit_code"] == EXIT_INTERNAL
    assert "an agent's flow raised" in error["message"]
