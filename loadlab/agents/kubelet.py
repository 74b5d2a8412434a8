"""A kubelet's API traffic: register its Node, renew its Lease, report status, watch its pods.

Three concurrent flows per node, each the code path of a real kubelet (Kubernetes 1.32) that talks
to the API server; numbers from docs/control-plane-model.md, "Kubelet and client-go":

- **lease** (component-helpers ``apimachinery/lease/controller.go``): ``wait.JitterUntil(sync,
  10s, 0.04, sliding=true)``: a round starts at once, then 10 s × [1, 1.04) after the previous
  round *ended*. ``sync`` PUTs the lease it last wrote (no GET); a failed PUT is tried
  ``maxUpdateRetries = 5`` times in all, back to back. After five failures, or with no lease
  yet, ``backoffEnsureLease`` GETs the lease (POSTs it on 404), waiting 0.2 s doubling to 7 s
  between failures until it has one, then (unless it just created it) tries five PUTs more. A
  409 Conflict on a PUT fetches the lease the same way and goes on with the next try.
- **status** (``pkg/kubelet/kubelet_node_status.go``): ``wait.JitterUntil(syncNodeStatus, 10s,
  0.04, sliding=true)`` (kubelet.go ``Run``). The first round registers the node; every round
  PATCHes ``nodes/<name>/status`` if the status changed or if 5 min
  (``nodeStatusReportFrequency``) passed since the last successful report. A real node's status
  rarely changes; here a change is a coin flip per round with ``status_change_probability``,
  **0 by default: a PATCH every 5 min**. A failed PATCH is tried again, after a fresh GET of the
  Node, up to ``nodeStatusUpdateRetry = 5`` tries in all. The first try reads the Node from the
  kubelet's informer (no request), as 1.32's ``tryUpdateNodeStatus`` does.
- **pods**: a reflector (``loadlab.agents.reflector``) on ``/api/v1/pods`` with
  ``fieldSelector=spec.nodeName=<node>``.

Every request also goes through client-go's REST retries (a 429/5xx with Retry-After is slept on
and resent, up to 10 times; ``send_with_retries``).

Simplifications, on purpose: registration GETs the Node first and POSTs it on 404 (the real
kubelet POSTs first and GETs on AlreadyExists; against a cluster whose nodes exist, the GET is the
cheaper and more common path); the kubelet's other informers (its Node, Services, ConfigMaps,
Secrets) and the lease's owner reference lookup are left out.

Agents have no wall clock: times written into objects (``renewTime``, ``lastHeartbeatTime``) are
the reply's engine time plus ``KubeletConfig.wall_offset_ns`` (0: engine time since 1970).
"""

from __future__ import annotations

import datetime
import enum
import random
from dataclasses import dataclass, field
from typing import Final

from loadlab.agents.base import (
    ApiCall,
    ApiReply,
    Flow,
    Identity,
    JsonObj,
    Report,
    Sleep,
    Woke,
    expect,
)
from loadlab.agents.reflector import (
    REST_MAX_RETRIES,
    ReflectorConfig,
    ReflectorState,
    SubFlow,
    reflect,
    send_with_retries,
)
from loadlab.clock import NS_PER_S, NS_PER_US
from loadlab.targets.base import Outcome

KIND: Final = "kubelet"
OPS: Final = (
    "node-get",
    "node-create",
    "lease-get",
    "lease-create",
    "lease-renew",
    "lease-renewal",
    "status-patch",
    "pods-list",
    "pods-watch",
)
"""Every op a kubelet records; ``lease-renewal`` is the ``Report`` of one renewal round."""

HTTP_NOT_FOUND: Final = 404
HTTP_CONFLICT: Final = 409
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class KubeletConfig:
    """A kubelet's settings; defaults are the kubelet's own (docs/control-plane-model.md,
    "Kubelet and client-go")."""

    qps: float | None = 50.0
    """``kubeAPIQPS`` 50 since 1.27 ("Watches and client rate limits")."""
    burst: int = 100
    """``kubeAPIBurst`` 100 since 1.27."""
    lease_namespace: str = "kube-node-lease"
    """Where node leases live; a run against a real cluster uses a namespace of its own."""
    lease_duration_s: int = 40
    """``nodeLeaseDurationSeconds`` ("Node lease")."""
    renew_interval_s: float = 10.0
    """0.25 × the lease duration (kubelet.go ``nodeLeaseRenewIntervalFraction``)."""
    renew_jitter: float = 0.04
    """``wait.JitterUntil(sync, renewInterval, 0.04, ...)``: each wait in [1, 1.04) × interval."""
    max_update_retries: int = 5
    """lease controller ``maxUpdateRetries``: PUTs per try, back to back."""
    ensure_backoff_s: float = 0.1
    """``backoffEnsureLease`` starts at 100 ms and doubles before each wait: 0.2 s first."""
    ensure_backoff_cap_s: float = 7.0
    """lease controller ``maxBackoff``."""
    register_backoff_s: float = 0.1
    """``registerWithAPIServer`` sleeps 100 ms before its first try, then doubles..."""
    register_backoff_cap_s: float = 7.0
    """...to at most 7 s."""
    status_update_interval_s: float = 10.0
    """``nodeStatusUpdateFrequency`` ("Node status")."""
    status_update_jitter: float = 0.04
    """kubelet.go ``Run``: ``wait.JitterUntil(kl.syncNodeStatus, freq, 0.04, true, ...)``."""
    status_report_interval_s: float = 300.0
    """``nodeStatusReportFrequency``: an unchanged status is still sent this often."""
    status_change_probability: float = 0.0
    """Chance that a status round finds the status changed (an assumption: 0, never)."""
    status_update_retries: int = 5
    """kubelet ``nodeStatusUpdateRetry``."""
    wall_offset_ns: int = 0
    """Added to engine time to write wall-clock fields; 0 writes engine time since 1970."""
    rest_max_retries: int = REST_MAX_RETRIES
    reflector: ReflectorConfig = field(default_factory=ReflectorConfig)
    manage_node: bool = True
    """Register the Node and report its status. Against a real cluster a run manages no Node
    unless its profile asks: a kubelet's Lease and pod watch need none."""
    node_prefix: str = "node-"
    """Node ``i`` is ``<prefix><i>``: a run against a real cluster names its nodes after itself,
    so it can never touch a real node's object."""
    labels: tuple[tuple[str, str], ...] = ()
    """Put on every object the kubelet creates (``loadlab.io/run=<id>``), so a run's objects can
    be found and deleted, even after the run was killed."""
    taints: tuple[tuple[str, str], ...] = ()
    """(key, effect) on the Nodes it registers: NoSchedule keeps real pods off them."""


class RenewalVerdict(enum.Enum):
    """How one lease renewal round went, from its ``lease-renewal`` report."""

    ON_TIME = "on-time"
    LATE = "late"
    FAILED = "failed"


def renewal_verdict(outcome: Outcome, latency_ns: int, config: KubeletConfig) -> RenewalVerdict:
    """A round is *failed* when it ended without a renewed (or created) lease, *late* when it
    renewed but finished more than one renew interval after it was due (the next round would
    already have been due), else *on time*. A report's latency runs from due to done."""
    if outcome is not Outcome.OK:
        return RenewalVerdict.FAILED
    if latency_ns > config.renew_interval_s * NS_PER_S:
        return RenewalVerdict.LATE
    return RenewalVerdict.ON_TIME


def micro_time(wall_ns: int) -> str:
    """metav1.MicroTime, ``2006-01-02T15:04:05.000000Z``."""
    secs, rest_ns = divmod(wall_ns, NS_PER_S)
    stamp = _EPOCH + datetime.timedelta(seconds=secs)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{rest_ns // NS_PER_US:06d}Z"


def rfc3339_time(wall_ns: int) -> str:
    """metav1.Time, ``2006-01-02T15:04:05Z`` (whole seconds)."""
    stamp = _EPOCH + datetime.timedelta(seconds=wall_ns // NS_PER_S)
    return f"{stamp:%Y-%m-%dT%H:%M:%SZ}"


def jittered_ns(period_s: float, max_factor: float, rng: random.Random) -> int:
    """``wait.Jitter(period, maxFactor)``: period × [1, 1 + maxFactor)."""
    return round(period_s * (1.0 + rng.random() * max_factor) * NS_PER_S)


def _ok(reply: ApiReply) -> bool:
    return 200 <= reply.status < 300


class Kubelet:
    """The simulated kubelet of node ``node-<node_index>`` (the ``Agent`` protocol)."""

    watches = 1
    """Its pods reflector holds one watch, on a connection of its own."""

    def __init__(self, node_index: int, config: KubeletConfig | None = None) -> None:
        self.config = config or KubeletConfig()
        self.node_index = node_index
        self.node_name = f"{self.config.node_prefix}{node_index}"
        self.kind: str = KIND
        self.identity = Identity(
            user=f"system:node:{self.node_name}",
            user_agent=f"kubelet/v1.32 (loadlab) {self.node_name}",
        )
        self.ops: tuple[str, ...] = OPS
        self.qps = self.config.qps
        self.burst = self.config.burst
        self.pods = ReflectorState()
        """What the pod reflector saw and did (its ``relists`` go into the summary)."""

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        # One generator per flow, each seeded from ``rng``: a flow's random draws do not depend
        # on the order the engine happens to interleave them in.
        lease_rng, status_rng, pods_rng = (random.Random(rng.getrandbits(64)) for _ in range(3))
        status = [_NodeStatus(self, start_ns, status_rng).run()] if self.config.manage_node else []
        return [
            _NodeLease(self, start_ns, lease_rng).run(),
            *status,
            reflect(
                "pods-list",
                "pods-watch",
                "/api/v1/pods",
                {"fieldSelector": f"spec.nodeName={self.node_name}"},
                self.config.reflector,
                pods_rng,
                start_ns,
                self.pods,
            ),
        ]


class _Flow:
    """Engine time as the last reply told it, and requests through the REST retries."""

    def __init__(self, kubelet: Kubelet, start_ns: int, rng: random.Random) -> None:
        self.kubelet = kubelet
        self.config = kubelet.config
        self.name = kubelet.node_name
        self.rng = rng
        self.now_ns = start_ns

    def wall_ns(self) -> int:
        return self.now_ns + self.config.wall_offset_ns

    def call(
        self,
        op: str,
        method: str,
        path: str,
        body: JsonObj | None = None,
        content_type: str = "application/json",
    ) -> SubFlow[ApiReply]:
        action = ApiCall(
            op, method, path, body=body, content_type=content_type, intended_ns=self.now_ns
        )
        reply = yield from send_with_retries(action, self.config.rest_max_retries)
        self.now_ns = reply.now_ns
        return reply

    def sleep_until(self, until_ns: int) -> SubFlow[None]:
        self.now_ns = expect((yield Sleep(until_ns=until_ns)), Woke).now_ns


class _NodeLease(_Flow):
    """component-helpers lease controller, one ``sync`` per round."""

    def __init__(self, kubelet: Kubelet, start_ns: int, rng: random.Random) -> None:
        super().__init__(kubelet, start_ns, rng)
        namespace = self.config.lease_namespace
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.path = f"{self.collection}/{self.name}"
        self.latest: JsonObj | None = None
        """The lease as the server last returned it to us (``latestLease``)."""

    def run(self) -> Flow:
        cfg = self.config
        due_ns = self.now_ns  # JitterUntil runs the first round at once
        while True:
            outcome = yield from self._sync()
            self.now_ns = expect(
                (yield Report("lease-renewal", outcome, started_ns=due_ns)), Woke
            ).now_ns
            # sliding=true: the next round is due one jittered period after this one ended.
            due_ns = self.now_ns + jittered_ns(cfg.renew_interval_s, cfg.renew_jitter, self.rng)
            yield from self.sleep_until(due_ns)

    def _sync(self) -> SubFlow[Outcome]:
        if self.latest is not None:
            outcome = yield from self._retry_update(self.latest)
            if outcome is Outcome.OK:
                return outcome
        lease, created = yield from self._ensure()
        self.latest = lease
        if created:
            return Outcome.OK  # "we don't need to update the lease if we just created it"
        return (yield from self._retry_update(lease))

    def _retry_update(self, base: JsonObj) -> SubFlow[Outcome]:
        """``retryUpdateLease``: ``maxUpdateRetries`` PUTs back to back; a 409 re-fetches."""
        outcome = Outcome.OK
        for _ in range(self.config.max_update_retries):
            lease = self._new_lease(base)
            reply = yield from self.call("lease-renew", "PUT", self.path, body=lease)
            if _ok(reply):
                self.latest = reply.body or lease
                return Outcome.OK
            outcome = reply.outcome
            if reply.status == HTTP_CONFLICT:
                base, _ = yield from self._ensure()
        return outcome

    def _ensure(self) -> SubFlow[tuple[JsonObj, bool]]:
        """``backoffEnsureLease``: GET (POST on 404) until it works; True when it created it."""
        cfg = self.config
        wait_s = cfg.ensure_backoff_s
        while True:  # as the controller: no limit but the engine's stop
            got = yield from self.call("lease-get", "GET", self.path)
            if got.status == 200 and got.body is not None:
                return got.body, False
            if got.status == HTTP_NOT_FOUND:
                lease = self._new_lease(None)
                made = yield from self.call("lease-create", "POST", self.collection, body=lease)
                if _ok(made):
                    return made.body or lease, True
            wait_s = min(2 * wait_s, cfg.ensure_backoff_cap_s)
            yield from self.sleep_until(self.now_ns + round(wait_s * NS_PER_S))

    def _new_lease(self, base: JsonObj | None) -> JsonObj:
        """``newLease``: a copy of ``base`` (or a fresh lease) renewed now."""
        if base is None:
            lease: JsonObj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": _metadata(self.name, self.config.lease_namespace, self.config),
            }
            spec: JsonObj = {}
        else:
            lease = dict(base)
            spec = dict(base.get("spec") or {})
        spec["holderIdentity"] = self.name
        spec["leaseDurationSeconds"] = self.config.lease_duration_s
        spec["renewTime"] = micro_time(self.wall_ns())
        lease["spec"] = spec
        return lease


class _NodeStatus(_Flow):
    """``syncNodeStatus``: register once, then report status when changed or every 5 min."""

    def __init__(self, kubelet: Kubelet, start_ns: int, rng: random.Random) -> None:
        super().__init__(kubelet, start_ns, rng)
        self.path = f"/api/v1/nodes/{self.name}"
        self.ready_since = ""
        """The Ready condition's lastTransitionTime: kept, only the heartbeat moves."""
        self.last_report_ns: int | None = None

    def run(self) -> Flow:
        cfg = self.config
        yield from self._register()
        while True:
            changed = cfg.status_change_probability > 0 and (
                self.rng.random() < cfg.status_change_probability
            )
            if changed or self._report_due():
                yield from self._update()
            wait_ns = jittered_ns(cfg.status_update_interval_s, cfg.status_update_jitter, self.rng)
            yield from self.sleep_until(self.now_ns + wait_ns)

    def _report_due(self) -> bool:
        if self.last_report_ns is None:
            return True
        return self.now_ns - self.last_report_ns >= self.config.status_report_interval_s * NS_PER_S

    def _register(self) -> SubFlow[None]:
        """``registerWithAPIServer``: sleep, try, double the sleep (to 7 s), until registered."""
        cfg = self.config
        step_s = cfg.register_backoff_s
        while True:  # as the kubelet: no limit but the engine's stop
            yield from self.sleep_until(self.now_ns + round(step_s * NS_PER_S))
            step_s = min(2 * step_s, cfg.register_backoff_cap_s)
            got = yield from self.call("node-get", "GET", self.path)
            if got.status == 200 and got.body is not None:
                self.ready_since = _ready_transition(got.body) or rfc3339_time(self.wall_ns())
                return
            if got.status == HTTP_NOT_FOUND:
                node = self._new_node()
                made = yield from self.call("node-create", "POST", "/api/v1/nodes", body=node)
                if _ok(made):
                    return

    def _update(self) -> SubFlow[None]:
        """``updateNodeStatus``: up to 5 tries; tries after the first GET the Node first."""
        for attempt in range(self.config.status_update_retries):
            if attempt > 0:
                got = yield from self.call("node-get", "GET", self.path)
                if not _ok(got):
                    continue
            patch = {"status": {"conditions": [self._ready_condition()]}}
            reply = yield from self.call(
                "status-patch",
                "PATCH",
                f"{self.path}/status",
                body=patch,
                content_type=STRATEGIC_MERGE_PATCH,
            )
            if _ok(reply):
                self.last_report_ns = self.now_ns  # lastStatusReportTime
                return

    def _ready_condition(self) -> JsonObj:
        # The whole condition, not only the heartbeat: a strategic merge matches it by type, a
        # plain merge patch (all the embedded sim does) replaces the list, and both stay valid.
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": rfc3339_time(self.wall_ns()),
            "lastTransitionTime": self.ready_since,
        }

    def _address(self) -> str:
        """TEST-NET-2 (198.51.100.0/24) only, as every address the project hands out."""
        return f"198.51.100.{self.kubelet.node_index % 254 + 1}"

    def _new_node(self) -> JsonObj:
        """The Node a new kubelet registers: the fields the API and kubectl need."""
        name = self.name
        self.ready_since = rfc3339_time(self.wall_ns())
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110"}  # 110: the supported maximum
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **dict(self.config.labels),
                },
            },
            "spec": {"taints": [{"key": k, "effect": e} for k, e in self.config.taints]}
            if self.config.taints
            else {},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [self._ready_condition()],
                "addresses": [
                    {"type": "InternalIP", "address": self._address()},
                    {"type": "Hostname", "address": name},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.32.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }


def _metadata(name: str, namespace: str, config: KubeletConfig) -> JsonObj:
    meta: JsonObj = {"name": name, "namespace": namespace}
    if config.labels:
        meta["labels"] = dict(config.labels)
    return meta


def _ready_transition(node: JsonObj) -> str | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            value = cond.get("lastTransitionTime")
            return str(value) if value else None
    return None
