"""A DaemonSet rollout as a pure schedule: when each node's new pod starts, and how many have.

A DaemonSet's load does not arrive at once: its pods reach the nodes batch by batch, and with
a per-node cost that grows with the cluster (docs/control-plane-model.md, "Why this model
exists") the API server's load grows with every node reached. ``RolloutPlan`` says when node
``k`` starts (``start_offset_s``) and how many nodes run the new pod at a moment
(``nodes_rolled_out``), so the telemetry agents, the live view and the summary read one schedule.
No clock, no I/O: seconds relative to the run's start.

Pacing. Kubernetes rolls a DaemonSet update (``updateStrategy: RollingUpdate``) with
``maxUnavailable`` 1 and ``maxSurge`` 0 by default: one node at a time, the next once the new pod
on the previous one is available ("Perform a Rolling Update on a DaemonSet",
https://kubernetes.io/docs/tasks/manage-daemon/update-daemon-set/). Each step then takes about a
pod's start-up time, which sig-scalability bounds at 5 s p99 for a stateless pod with its image
present (docs/control-plane-model.md, "SLOs"). ``RolloutPlan.daemonset(max_unavailable,
pod_start_s)`` is that model: batches of ``max_unavailable`` nodes every ``pod_start_s``.

The default plan is an assumption, not the Kubernetes default: ``maxUnavailable`` 1 at 5 s a node
would take 5,000 × 5 s ≈ 7 h on a 5,000-node cluster (the supported maximum), longer than any test
run, and large clusters set ``maxUnavailable`` to a percentage. The default paces
``DEFAULT_MAX_UNAVAILABLE`` = 50 nodes (1 % of 5,000) per 5 s, i.e. 10 nodes/s, spread node by
node rather than in bursts of 50: 4,000 nodes in 400 s, 5,000 in 500 s (about 7 and 8 minutes).
A DaemonSet created anew (not updated) gets its pods on every node without a rolling update,
as fast as the controller and the kubelets go: model that with a high pace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_POD_START_S = 5.0
"""A new pod's start-up time: sig-scalability's pod start-up SLO, 5 s p99 (stateless, image
present; docs/control-plane-model.md, "SLOs")."""
DEFAULT_MAX_UNAVAILABLE = 50
"""Nodes updated at once by default: 1 % of the 5,000-node supported maximum
(docs/control-plane-model.md, "Supported scale"). An assumption; Kubernetes' own default is 1."""
DEFAULT_PACE_NODES_PER_S = DEFAULT_MAX_UNAVAILABLE / DEFAULT_POD_START_S
"""10 nodes/s: 4,000 nodes in 400 s."""


@dataclass(frozen=True)
class RolloutPlan:
    """When each node's new pod starts: node ``k`` at ``start_s + (k // batch_nodes) *
    batch_nodes / pace_nodes_per_s``; with ``batch_nodes`` 1 that is exactly ``start_s + k /
    pace_nodes_per_s``."""

    start_s: float = 0.0
    """When the rollout begins, in seconds from the run's start."""
    pace_nodes_per_s: float = DEFAULT_PACE_NODES_PER_S
    """Nodes rolled per second, on average."""
    batch_nodes: int = 1
    """Nodes that start together (a DaemonSet's ``maxUnavailable``); 1: node by node."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise ValueError(f"rollout start_s must be a finite time >= 0, got {self.start_s}")
        if not math.isfinite(self.pace_nodes_per_s) or self.pace_nodes_per_s <= 0:
            raise ValueError(
                f"rollout pace_nodes_per_s must be positive and finite, got {self.pace_nodes_per_s}"
            )
        if self.batch_nodes < 1:
            raise ValueError(f"rollout batch_nodes must be at least 1, got {self.batch_nodes}")

    @classmethod
    def daemonset(
        cls,
        *,
        max_unavailable: int = 1,
        pod_start_s: float = DEFAULT_POD_START_S,
        start_s: float = 0.0,
    ) -> RolloutPlan:
        """A RollingUpdate as Kubernetes runs it: ``max_unavailable`` nodes at a time (1, the
        Kubernetes default), each batch taking ``pod_start_s`` before the next starts."""
        if pod_start_s <= 0:
            raise ValueError(f"pod_start_s must be positive, got {pod_start_s}")
        if max_unavailable < 1:
            raise ValueError(f"max_unavailable must be at least 1, got {max_unavailable}")
        return cls(
            start_s=start_s,
            pace_nodes_per_s=max_unavailable / pod_start_s,
            batch_nodes=max_unavailable,
        )

    def start_offset_s(self, node_index: int) -> float:
        """When node ``node_index``'s new pod starts, in seconds from the run's start."""
        if node_index < 0:
            raise ValueError(f"node_index must not be negative, got {node_index}")
        first_of_batch = node_index - node_index % self.batch_nodes
        return self.start_s + first_of_batch / self.pace_nodes_per_s

    def nodes_rolled_out(self, t_s: float, node_count: int) -> int:
        """How many of ``node_count`` nodes have started their new pod at ``t_s`` (a node whose
        start is exactly ``t_s`` counts): the same answer as counting ``start_offset_s(k) <=
        t_s``, without the loop."""
        if node_count <= 0 or t_s < self.start_s:
            return 0
        if t_s >= self.end_s(node_count):
            return node_count
        batch = self.batch_nodes
        batches = -(-node_count // batch)
        # Batch j starts at start_offset_s(j * batch). The closed form can be one off at a
        # boundary through float rounding; the nudges make it agree with start_offset_s exactly.
        started = min(batches, math.floor((t_s - self.start_s) * self.pace_nodes_per_s / batch) + 1)
        for _ in range(4):
            if started < batches and self.start_offset_s(started * batch) <= t_s:
                started += 1
            elif started > 0 and self.start_offset_s((started - 1) * batch) > t_s:
                started -= 1
            else:
                break
        return min(node_count, started * batch)

    def end_s(self, node_count: int) -> float:
        """When the last of ``node_count`` nodes starts (``start_s`` when there are none)."""
        return self.start_offset_s(node_count - 1) if node_count > 0 else self.start_s
