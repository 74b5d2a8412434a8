"""The telemetry DaemonSet of the incident: one pod per node, each making cluster-wide LISTs.

OpenAI's postmortem of December 2024 describes a new telemetry DaemonSet whose pods made
Kubernetes API calls whose cost grew with the cluster's size (docs/control-plane-model.md, "Why
this model exists"): N nodes each doing O(N) work per interval is O(N²) on the API servers.
The postmortem does not say which calls, nor how often; this agent makes that a setting.

What it models:

- **One identity for all nodes.** Every pod of a DaemonSet runs as the same service account
  (``system:serviceaccount:monitoring:telemetry`` by default), so APF sees them as *one flow* on
  ``workload-low`` (FlowSchema ``service-accounts``, one flow per user): one hand of queues for
  the whole fleet (docs/control-plane-model.md, "Who lands on which level").
- **Cluster-scoped LISTs**, by default every pod in all namespaces and every node, read
  consistently (``resourceVersion`` unset: served from etcd when the watch cache cannot answer,
  the expensive path; "0" reads the watch cache) in pages of 500 (client-go ``tools/pager``,
  ``defaultPageSize``), following ``continue`` tokens. Pages after the first drop
  ``resourceVersion``, as the pager does (the server refuses both together). When a later page
  answers 410 Expired, the pager falls back to one unpaged LIST at the requested
  ``resourceVersion`` (``FullListIfExpired``, on in ``pager.New``), the dearest request of all.
- **client-go's REST retries** (``ClientGoRetry``): a 429, or a 5xx with ``Retry-After``, is
  retried after exactly that many seconds, up to 10 retries; a GET whose connection was reset is
  retried after 1 s. Anything else is final.
- **Rounds on a ticker.** Node ``i``'s pod starts when the rollout (``RolloutPlan``) reaches it;
  its first round comes at a random offset within one interval (pods do not start in lockstep),
  then one round per ``interval_s`` on that grid. A round that overruns its interval is followed
  at once by the next one, and the ticks missed meanwhile are dropped, as Go's ``time.Ticker``
  does for a slow reader.

Each page is recorded under ``telemetry-<call name>`` by the engine; the agent itself reports
``telemetry-round`` for each round: OK only if every call of it succeeded, else the outcome of
the first call that failed, with latency from the round's tick.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from loadlab.agents.base import (
    Action,
    ApiCall,
    ApiReply,
    Flow,
    Identity,
    Report,
    Sleep,
    Woke,
    expect,
)
from loadlab.agents.rollout import RolloutPlan
from loadlab.clock import NS_PER_S
from loadlab.targets.base import Outcome

KIND = "telemetry"
ROUND_OP = "telemetry-round"
"""The ``Report`` op of one whole round of calls."""

DEFAULT_USER = "system:serviceaccount:monitoring:telemetry"
"""A service account outside kube-system: FlowSchema ``service-accounts`` → ``workload-low``,
one flow per user (docs/control-plane-model.md, "Who lands on which level")."""
DEFAULT_INTERVAL_S = 60.0
"""Not from the incident: its postmortem gives no interval. One minute is Prometheus' default
``scrape_interval`` (https://prometheus.io/docs/prometheus/latest/configuration/configuration/),
the period most cluster telemetry collects at. Change it when you know the real one."""
DEFAULT_PAGE_SIZE = 500
"""client-go ``tools/pager`` ``defaultPageSize`` (docs/control-plane-model.md, "Reflector")."""
DEFAULT_QPS = 5.0
DEFAULT_BURST = 10
"""client-go's limits for a client that sets none: ``rest.DefaultQPS`` 5, ``DefaultBurst`` 10
(docs/control-plane-model.md, "Watches and client rate limits")."""
DEFAULT_MAX_RETRIES = 10
"""client-go ``rest.NewRequest``: ``maxRetries: 10`` (docs/control-plane-model.md, "REST client
retries")."""
CONN_RETRY_WAIT_S = 1.0
"""client-go ``rest/with_retry.go``: a retryable connection error gets an artificial
``Retry-After: 1`` (``retryAfterResponse``)."""
DEFAULT_MAX_PAGES = 10_000
"""Pages of one LIST at most (5,000,000 objects at 500 a page, 30 times the supported 150,000
pods), so a server that keeps handing out ``continue`` tokens cannot hold a round forever."""
REQUEST_TIMEOUT_S = 60.0
"""The client waits as long as kube-apiserver's own ``--request-timeout`` (60 s)."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class TelemetryCall:
    """One LIST of a telemetry round."""

    name: str
    """Op suffix: recorded as ``telemetry-<name>``."""
    path: str
    """Collection path, e.g. ``/api/v1/pods`` (all namespaces)."""
    resource_version: str = ""
    """"": a consistent read (etcd unless the cache can serve it, the expensive path); "0": any
    version, from the watch cache (docs/control-plane-model.md, "Where a LIST is served")."""
    limit: int = DEFAULT_PAGE_SIZE
    """Page size; 0: one unpaged LIST."""
    label_selector: str = ""
    field_selector: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"telemetry call name {self.name!r}: use lower-case letters, digits and '-'"
            )
        if not self.path.startswith("/"):
            raise ValueError(f"telemetry call {self.name}: path must start with '/'")
        if self.limit < 0:
            raise ValueError(f"telemetry call {self.name}: limit must be >= 0, got {self.limit}")

    @property
    def op(self) -> str:
        return f"{KIND}-{self.name}"

    def first_page_params(self) -> dict[str, str]:
        """Query of the first page: client-go omits an empty ``resourceVersion`` and selector."""
        params: dict[str, str] = {}
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        if self.limit:
            params["limit"] = str(self.limit)
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params


DEFAULT_CALLS = (
    TelemetryCall("list-pods", "/api/v1/pods"),
    TelemetryCall("list-nodes", "/api/v1/nodes"),
)
"""Every pod and every node of the cluster: both grow with the node count."""


@dataclass(frozen=True)
class ClientGoRetry:
    """client-go's REST retry rule (``rest/request.go`` ``request``, ``rest/with_retry.go``
    ``IsNextRetry`` and ``checkWait``, https://github.com/kubernetes/client-go/blob/v0.32.0/rest/):

    - a 429 or any 5xx *with* a ``Retry-After`` is retried after that many seconds (client-go
      reads whole seconds; the sim sends whole seconds);
    - a 429 without ``Retry-After`` is not retried;
    - on a GET, a reset connection or an unexpected EOF is retried after 1 s (the loadlab
      outcome ``CONN_ERROR`` also covers a refused connection, which client-go would not retry);
    - at most ``max_retries`` retries (so ``max_retries + 1`` attempts); each retry also waits
      for the client's rate limiter (the engine applies ``qps``/``burst`` to every request).

    The default rest client has no other backoff (``NoBackoff`` unless ``KUBE_CLIENT_BACKOFF_*``
    is set), so the wait is exactly the ``Retry-After``.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    retry_connection_errors: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    def wait_s(self, method: str, reply: ApiReply) -> float | None:
        """Seconds to wait before retrying after ``reply``, or None: the reply is final."""
        if reply.status == 429 or reply.status >= 500:
            return reply.retry_after_s
        if (
            self.retry_connection_errors
            and method == "GET"
            and reply.status == 0
            and reply.outcome is Outcome.CONN_ERROR
        ):
            return CONN_RETRY_WAIT_S
        return None


def call_with_retries(call: ApiCall, policy: ClientGoRetry) -> Generator[Action, Any, ApiReply]:
    """Send ``call``, retrying as ``policy`` says; return the final reply. Each attempt is its own
    request on the wire (and in the metrics); retries are sent as soon as their wait is over."""
    attempt_call = call
    for attempt in range(policy.max_retries + 1):
        reply = expect((yield attempt_call), ApiReply)
        wait_s = policy.wait_s(call.method, reply)
        if wait_s is None or attempt == policy.max_retries:
            return reply
        yield Sleep(until_ns=reply.now_ns + round(wait_s * NS_PER_S))
        # A retry is a new request, meant for when its wait is over (client-go then also waits
        # for its rate limiter, which the engine applies).
        attempt_call = replace(call, intended_ns=None)
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


@dataclass(frozen=True)
class TelemetryConfig:
    """How the telemetry DaemonSet behaves; every field has a cited or stated default."""

    calls: tuple[TelemetryCall, ...] = DEFAULT_CALLS
    interval_s: float = DEFAULT_INTERVAL_S
    """Seconds between a pod's rounds."""
    user: str = DEFAULT_USER
    """The service account every pod runs as: one APF flow for the whole DaemonSet."""
    rollout: RolloutPlan = field(default_factory=RolloutPlan)
    """When each node's pod starts."""
    retry: ClientGoRetry = field(default_factory=ClientGoRetry)
    full_list_if_expired: bool = True
    """client-go ``pager.New``: after a 410 on a later page, LIST everything unpaged once."""
    qps: float | None = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    max_pages: int = DEFAULT_MAX_PAGES
    max_rounds: int | None = None
    """Rounds per pod; None: until the engine stops the flow."""

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError("telemetry needs at least one call per round")
        names = [c.name for c in self.calls]
        if len(set(names)) != len(names) or "round" in names:
            raise ValueError(f"telemetry call names must be distinct and not 'round': {names}")
        if not math.isfinite(self.interval_s) or self.interval_s <= 0:
            raise ValueError(f"telemetry interval_s must be positive, got {self.interval_s}")
        if self.qps is not None and self.qps <= 0:
            raise ValueError(f"telemetry qps must be positive or None, got {self.qps}")
        if self.burst < 1:
            raise ValueError(f"telemetry burst must be at least 1, got {self.burst}")
        if self.max_pages < 1:
            raise ValueError(f"telemetry max_pages must be at least 1, got {self.max_pages}")
        if self.max_rounds is not None and self.max_rounds < 0:
            raise ValueError(f"telemetry max_rounds must be >= 0, got {self.max_rounds}")

    @property
    def ops(self) -> tuple[str, ...]:
        return (*(c.op for c in self.calls), ROUND_OP)


class Telemetry:
    """The telemetry pod on node ``node_index`` (an ``Agent``)."""

    kind = KIND
    watches = 0
    """Telemetry LISTs; it never watches (``engine.agents.sockets_needed``)."""

    def __init__(self, node_index: int, config: TelemetryConfig | None = None) -> None:
        if node_index < 0:
            raise ValueError(f"node_index must not be negative, got {node_index}")
        self.node_index = node_index
        self.config = config if config is not None else TelemetryConfig()
        self.identity = Identity(
            user=self.config.user, user_agent=f"telemetry/v1 (loadlab) node-{node_index}"
        )
        self.ops = self.config.ops
        self.qps = self.config.qps
        self.burst = self.config.burst

    def first_round_ns(self, start_ns: int, rng: random.Random) -> int:
        """When this pod's first round starts: its rollout start plus a random offset within one
        interval. Draws one number from ``rng``."""
        cfg = self.config
        offset_s = cfg.rollout.start_offset_s(self.node_index) + rng.uniform(0.0, cfg.interval_s)
        return start_ns + round(offset_s * NS_PER_S)

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        return [self._rounds(self.first_round_ns(start_ns, rng))]

    def _rounds(self, first_ns: int) -> Flow:
        cfg = self.config
        interval_ns = round(cfg.interval_s * NS_PER_S)
        tick_ns = first_ns
        rounds = range(cfg.max_rounds) if cfg.max_rounds is not None else itertools.count()
        for _ in rounds:
            woke = expect((yield Sleep(until_ns=tick_ns)), Woke)
            outcome = Outcome.OK
            for call in cfg.calls:
                result = yield from self._list(call)
                if outcome is Outcome.OK:
                    outcome = result
            yield Report(ROUND_OP, outcome, started_ns=tick_ns)
            # Go's time.Ticker: ticks on the grid first_ns + k * interval. A tick delivered late
            # (woke after it) held the ticker's one-slot channel, so the grid points up to the
            # moment it was read were dropped; the next tick is the first grid point after that.
            # If this round overran that tick too, it waits in the channel: Sleep returns at once.
            tick_ns += interval_ns * ((woke.now_ns - tick_ns) // interval_ns + 1)

    def _list(self, call: TelemetryCall) -> Generator[Action, Any, Outcome]:
        """One LIST through the pager: every page, retried as client-go does. Returns OK or the
        outcome of the page that failed."""
        cfg = self.config
        params: Mapping[str, str] = call.first_page_params()
        for _ in range(cfg.max_pages):
            request = ApiCall(
                call.op,
                "GET",
                call.path,
                params=params,
                timeout_s=REQUEST_TIMEOUT_S,
                # An unpaged LIST's body is only needed for a continue token it cannot have.
                keep_body=call.limit != 0,
            )
            reply = yield from call_with_retries(request, cfg.retry)
            if reply.outcome is not Outcome.OK:
                if reply.status == 410 and cfg.full_list_if_expired and "continue" in params:
                    return (yield from self._full_list(call))
                return reply.outcome
            token = _continue_token(reply)
            if not token:
                return Outcome.OK
            params = {k: v for k, v in params.items() if k != "resourceVersion"}
            params["continue"] = token
        return Outcome.OK  # max_pages reached: stop following tokens, the round goes on

    def _full_list(self, call: TelemetryCall) -> Generator[Action, Any, Outcome]:
        params = {k: v for k, v in call.first_page_params().items() if k != "limit"}
        request = ApiCall(
            call.op, "GET", call.path, params=params, timeout_s=REQUEST_TIMEOUT_S, keep_body=False
        )
        reply = yield from call_with_retries(request, self.config.retry)
        return reply.outcome


def _continue_token(reply: ApiReply) -> str:
    """``metadata.continue`` of a List body; "" when absent (the last page)."""
    body = reply.body or {}
    metadata = body.get("metadata")
    token = metadata.get("continue") if isinstance(metadata, dict) else None
    return token if isinstance(token, str) else ""
