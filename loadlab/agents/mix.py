"""The request mix as an agent: one client sending a weighted GET/LIST/WATCH/PUT/PATCH mix.

The HTTP profiles describe their load as a mix of operations (``loadlab.profile.HttpOp``: name,
method, path with ``{i}``, spread, body, weight, user, content type) sent by one shared pool of
connections. As agent kind ``mix`` the same mix is sent by many clients, each with its own
identity and its own share of the rate, so APF sees many flows instead of one, as it does in a
cluster full of controllers.

Each agent:

- sends at ``rate_per_s`` (its share of the total), on Poisson arrivals by default (independent
  clients) or evenly spaced with a random phase;
- picks each request's operation by weight with the ``rng`` it is given;
- renders ``{i}`` in path and body from its own rotation per operation, 0..spread-1 round-robin
  as the HTTP target does, starting at ``agent_index % spread`` so that agents do not all touch
  object 0 first (``{i}`` is left as written when ``spread`` is 1, as the HTTP target leaves it);
- authenticates as the operation's ``user``, or as ``default_user`` (``{agent}`` there becomes
  the agent's index). The engine gives each agent one identity, so an agent sends the operations
  of one user: ``request_mix_agents`` splits a mix with several users into one agent per user,
  each with the rate share of its operations' weights, together sending ``rate_per_s``.

Open loop, with a bound. Every request has an intended time from the arrivals and is recorded
with latency from it (coordinated omission corrected, as for the HTTP mix). At most
``max_in_flight`` requests are outstanding per agent: a flow that is still waiting for a reply
cannot send, so when the server stalls the next sends go out late, as soon as a flow is free,
and their latency counts the wait. Nothing is skipped and nothing extra is reported: every
``ApiCall`` is recorded by the engine under the operation's name.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from loadlab.agents.base import ApiCall, Flow, Identity, JsonObj, Sleep
from loadlab.clock import NS_PER_S

KIND = "mix"
DEFAULT_USER = "loadlab-mix-{agent}"
"""Not a service account nor a node: FlowSchema ``global-default``, one APF flow per user, so per
agent (docs/control-plane-model.md, "Who lands on which level")."""
DEFAULT_MAX_IN_FLIGHT = 4
"""Outstanding requests per agent at most. An assumption: client-go sets no such limit, but a
bound keeps a stalled server from collecting an unbounded backlog per agent."""
REQUEST_TIMEOUT_S = 60.0
"""kube-apiserver's own ``--request-timeout``."""

Arrival = Literal["constant", "poisson"]


class MixOp(Protocol):
    """One operation of the mix: what ``loadlab.profile.HttpOp`` provides (read-only)."""

    @property
    def name(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def content_type(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def spread(self) -> int: ...
    @property
    def user(self) -> str | None: ...


@dataclass(frozen=True)
class RequestMixConfig:
    """What every ``mix`` agent sends, and how fast each one does."""

    ops: tuple[MixOp, ...]
    rate_per_s: float
    """Requests per second of one agent (of all its users together, via ``request_mix_agents``)."""
    arrival: Arrival = "poisson"
    default_user: str = DEFAULT_USER
    """Identity for operations without ``user``; ``{agent}`` becomes the agent's index."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    qps: float | None = None
    """A client-side rate limit, None: none (the HTTP mix has none either)."""
    burst: int = 1
    max_requests: int | None = None
    """Requests per agent at most; None: until the engine stops the flows."""

    def __post_init__(self) -> None:
        if not self.ops:
            raise ValueError("a request mix needs at least one operation")
        if not math.isfinite(self.rate_per_s) or self.rate_per_s <= 0:
            raise ValueError(f"mix rate_per_s must be positive and finite, got {self.rate_per_s}")
        if self.arrival not in ("constant", "poisson"):
            raise ValueError(f"mix arrival must be 'constant' or 'poisson', got {self.arrival!r}")
        if self.max_in_flight < 1:
            raise ValueError(f"mix max_in_flight must be at least 1, got {self.max_in_flight}")
        if self.qps is not None and self.qps <= 0:
            raise ValueError(f"mix qps must be positive or None, got {self.qps}")
        if self.burst < 1:
            raise ValueError(f"mix burst must be at least 1, got {self.burst}")
        if self.max_requests is not None and self.max_requests < 0:
            raise ValueError(f"mix max_requests must be >= 0, got {self.max_requests}")
        for op in self.ops:
            if op.weight <= 0 or op.spread < 1:
                raise ValueError(f"mix operation {op.name}: weight must be > 0 and spread >= 1")
            if op.body is not None:
                _parse_body(op, op.body)

    def default_identity(self, agent_index: int) -> str:
        """``default_user`` for agent ``agent_index``."""
        return self.default_user.replace("{agent}", str(agent_index))

    def user_of(self, op: MixOp, agent_index: int) -> str:
        """The identity ``op`` is sent as by agent ``agent_index``."""
        return op.user if op.user is not None else self.default_identity(agent_index)


def _parse_body(op: MixOp, text: str) -> JsonObj:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"mix operation {op.name}: body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"mix operation {op.name}: body must be a JSON object")
    return body


def _render(template: str, spread: int, i: int) -> str:
    # As the HTTP target: {i} is only rendered when there is more than one value.
    return template.replace("{i}", str(i)) if spread > 1 else template


@dataclass(frozen=True)
class _Send:
    due_ns: int
    op: int
    i: int


class RequestMix:
    """One client of the request mix (an ``Agent`` of kind ``mix``), sending the operations of
    one identity: ``user`` (default: the config's ``default_user`` for this agent)."""

    kind = KIND

    watches = 0
    """The mix sends requests; a WATCH in it is an ordinary call (head only), on the pool."""

    def __init__(
        self, agent_index: int, config: RequestMixConfig, *, user: str | None = None
    ) -> None:
        if agent_index < 0:
            raise ValueError(f"agent_index must not be negative, got {agent_index}")
        self.agent_index = agent_index
        self.config = config
        me = user if user is not None else config.default_identity(agent_index)
        mine = [op for op in config.ops if config.user_of(op, agent_index) == me]
        if not mine:
            users = sorted({config.user_of(op, agent_index) for op in config.ops})
            raise ValueError(
                f"no operation of the mix is sent as {me!r} (its users: {users}); "
                "use request_mix_agents() for a mix with several users"
            )
        self.mix_ops: tuple[MixOp, ...] = tuple(mine)
        total_weight = sum(op.weight for op in config.ops)
        self.rate_per_s = config.rate_per_s * sum(op.weight for op in mine) / total_weight
        """This agent's share of ``config.rate_per_s``: its operations' share of the weights."""
        self.identity = Identity(user=me, user_agent=f"loadlab-mix/v1 agent-{agent_index}")
        self.ops = tuple(dict.fromkeys(op.name for op in mine))
        self.qps = config.qps
        self.burst = config.burst
        self._bodies = tuple(
            _parse_body(op, op.body) if op.body is not None and "{i}" not in op.body else None
            for op in mine
        )

    def flows(self, start_ns: int, rng: random.Random) -> list[Flow]:
        sends = self._sends(start_ns, rng)
        return [self._sender(sends) for _ in range(self.config.max_in_flight)]

    def _sends(self, start_ns: int, rng: random.Random) -> Iterator[_Send]:
        """The agent's sends in order, shared by its flows: each takes the next one when free.
        Times, operations and ``{i}`` are drawn here, in order, so they do not depend on which
        flow happens to send them."""
        cfg = self.config
        gap_s = 1.0 / self.rate_per_s
        cum_weights = list(itertools.accumulate(op.weight for op in self.mix_ops))
        rotation = [self.agent_index % op.spread for op in self.mix_ops]
        count = range(cfg.max_requests) if cfg.max_requests is not None else itertools.count()
        # A constant schedule starts at a random phase so agents do not send in lockstep.
        constant = cfg.arrival == "constant"
        t_s = rng.uniform(0.0, gap_s) if constant else rng.expovariate(self.rate_per_s)
        for k in count:
            if constant:
                due_s = t_s + k * gap_s  # from k, not accumulated: no drift
            else:
                due_s = t_s
                t_s += rng.expovariate(self.rate_per_s)
            op = rng.choices(range(len(self.mix_ops)), cum_weights=cum_weights)[0]
            i = rotation[op]
            rotation[op] = (i + 1) % self.mix_ops[op].spread
            yield _Send(due_ns=start_ns + round(due_s * NS_PER_S), op=op, i=i)

    def _sender(self, sends: Iterator[_Send]) -> Flow:
        for send in sends:
            yield Sleep(until_ns=send.due_ns)
            yield self.call(send.op, send.i, send.due_ns)

    def call(self, op_index: int, i: int, intended_ns: int | None = None) -> ApiCall:
        """The request for operation ``op_index`` (of ``mix_ops``) with ``{i}`` = ``i``."""
        op = self.mix_ops[op_index]
        body = self._bodies[op_index]
        if body is None and op.body is not None:
            body = _parse_body(op, _render(op.body, op.spread, i))
        return ApiCall(
            op.name,
            op.method,
            _render(op.path, op.spread, i),
            body=body,
            content_type=op.content_type,
            intended_ns=intended_ns,
            timeout_s=REQUEST_TIMEOUT_S,
        )


def request_mix_agents(agent_index: int, config: RequestMixConfig) -> list[RequestMix]:
    """Agent ``agent_index`` of the mix, as one ``RequestMix`` per identity its operations use
    (in the order they first appear); their rates add up to ``config.rate_per_s``."""
    users = dict.fromkeys(config.user_of(op, agent_index) for op in config.ops)
    return [RequestMix(agent_index, config, user=user) for user in users]
