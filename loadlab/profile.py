"""Profiles: what load to offer, to which target, and what counts as passing.

A profile is YAML validated by pydantic with unknown fields forbidden, so a misspelt field is an
error that names it, not a silently ignored setting. ``--set a.b=value`` overrides any field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadlab.analysis.steps import StepCriteria
from loadlab.errors import ProfileError

PROFILE_SCHEMA = "loadlab.profile/v1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpOp(_Strict):
    """One entry of the API request mix."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(pattern=r"^/")
    body: str | None = None
    content_type: str = "application/json"
    weight: float = Field(default=1.0, gt=0)
    spread: int = Field(default=1, ge=1, description="render {i} in path/body as 0..spread-1")
    user: str | None = Field(default=None, description="bearer token = identity in the sim")
    slo_p99_ms: float = Field(
        default=1000.0,
        gt=0,
        description="sig-scalability: single-object calls p99 <= 1 s; LIST <= 30 s",
    )


class DnsOp(_Strict):
    """One entry of the DNS query mix."""

    name: str
    type: Literal["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "MX", "NS", "SOA"] = "A"
    weight: float = Field(default=1.0, gt=0)
    expect_nxdomain: bool = False
    slo_p99_ms: float = Field(default=100.0, gt=0, description="clusterloader2 DNS: p99 <= 100 ms")

    @property
    def op_name(self) -> str:
        return f"{self.type.lower()}-{self.name.rstrip('.')}"


class ApiTarget(_Strict):
    url: str | None = Field(default=None, description="None: start the embedded control plane")
    connections: int = Field(default=64, ge=1, le=10_000)
    timeout_s: float = Field(default=60.0, gt=0, description="kube-apiserver --request-timeout")
    honour_retry_after: bool = False
    mix: tuple[HttpOp, ...] = Field(min_length=1)


class DnsTarget(_Strict):
    server: str | None = Field(default=None, description="HOST:PORT; None: the embedded DNS")
    sockets: int = Field(default=2, ge=1, le=64)
    timeout_s: float = Field(default=2.0, gt=0)
    queries: tuple[DnsOp, ...] = Field(min_length=1)


class Ramp(_Strict):
    """Stepped open-loop search of the rate (knee-method.md, 'Method')."""

    start_per_s: float = Field(gt=0)
    factor: float = Field(default=2.0, gt=1)
    max_per_s: float = Field(gt=0)
    step_s: float = Field(default=10.0, gt=0)
    warmup_s: float = Field(default=2.0, ge=0)
    refine_within: float = Field(default=0.05, gt=0, lt=1)
    max_steps: int = Field(default=30, ge=1, le=200)

    @model_validator(mode="after")
    def _bounds(self) -> Ramp:
        if self.max_per_s < self.start_per_s:
            raise ValueError("max_per_s must be >= start_per_s")
        if self.warmup_s >= self.step_s:
            raise ValueError("warmup_s must be shorter than step_s")
        return self


class Load(_Strict):
    mode: Literal["open", "closed"] = "open"
    arrival: Literal["constant", "poisson"] = "constant"
    rate_per_s: float | None = Field(default=None, gt=0, description="fixed open-loop rate")
    concurrency: int = Field(default=64, ge=1, le=100_000, description="closed loop: in flight")
    duration_s: float = Field(default=30.0, gt=0, le=86_400)
    ramp: Ramp | None = None
    seed: int = 1

    @model_validator(mode="after")
    def _shape(self) -> Load:
        if self.mode == "open" and self.ramp is None and self.rate_per_s is None:
            raise ValueError("an open-loop load needs rate_per_s or a ramp")
        if self.mode == "closed" and self.ramp is not None:
            raise ValueError("a ramp needs mode: open (a closed loop has no offered rate)")
        return self


_STEP_DEFAULTS = StepCriteria()


class Criteria(_Strict):
    """What makes a step pass (knee-method.md) and what the run's SLO gate checks."""

    # Defaults, with their sources, live once: in loadlab.analysis.steps.StepCriteria.
    max_error_rate: float = Field(default=_STEP_DEFAULTS.max_error_rate, ge=0, le=1)
    min_sent_ratio: float = Field(default=_STEP_DEFAULTS.min_sent_ratio, gt=0, le=1)
    max_lag_p99_ms: float = Field(default=_STEP_DEFAULTS.max_lag_p99_ms, gt=0)
    min_achieved_ratio: float = Field(default=_STEP_DEFAULTS.min_achieved_ratio, gt=0, le=1)
    max_generator_cpu_percent: float = Field(
        default=90.0,
        gt=0,
        le=100,
        description="a failing step while the generator used more of its core is its own limit",
    )


class SimSettings(_Strict):
    """Arguments for the embedded control plane when no target URL is given."""

    nodes: int = Field(default=100, ge=1, le=20_000)
    pods_per_node: int = Field(default=10, ge=0, le=110)  # reference: 110 pods per node max
    config: str | None = None


class Profile(_Strict):
    schema_: str = Field(default=PROFILE_SCHEMA, alias="schema")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    api: ApiTarget | None = None
    dns: DnsTarget | None = None
    load: Load
    criteria: Criteria = Criteria()
    sim: SimSettings = SimSettings()
    interval_s: float = Field(default=1.0, ge=0.1, le=60)

    @model_validator(mode="after")
    def _targets(self) -> Profile:
        if self.api is None and self.dns is None:
            raise ValueError("a profile needs an 'api' or a 'dns' section (or both)")
        return self


def load_profile(path: str | Path, overrides: list[str] | None = None) -> Profile:
    """Read, override and validate a profile; every failure is one ProfileError line."""
    p = Path(path)
    if not p.exists():
        hint = ""
        shipped = Path(__file__).resolve().parent.parent / "profiles" / f"{p.stem}.yaml"
        if not p.suffix and shipped.exists():
            hint = f" (did you mean {shipped}?)"
        raise ProfileError(f"profile {path}: no such file{hint}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        # The context mark is where the broken construct began; the problem mark is often EOF.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"profile {path}:{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"profile {path}: expected a mapping at the top level")
    for item in overrides or []:
        apply_override(raw, item)
    return validate_profile(raw, source=str(path))


def validate_profile(raw: dict[str, Any], *, source: str = "profile") -> Profile:
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first error, as 'field a.b.c: what was expected (got X)'."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown field '{loc}' (misspelt? see the profile reference in README.md)"
    if kind == "missing":
        return f"field '{loc}' is required"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    more = f"; and {len(exc.errors()) - 1} more" if len(exc.errors()) > 1 else ""
    return f"field '{loc}': {msg}{shown}{more}"


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the raw profile mapping, in place."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ProfileError(f"--set {item!r}: expected key=value, e.g. load.ramp.max_per_s=5000")
    try:
        parsed = yaml.safe_load(value) if value else None
    except yaml.YAMLError:
        parsed = value
    node: Any = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = _list_item(node, part, key)
            continue
        if not isinstance(node, dict):
            raise ProfileError(f"--set {key}: '{part}' is not a section")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, key)
        node[index] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise ProfileError(f"--set {key}: '{last}' is not inside a section")


def _index(node: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ProfileError(f"--set {key}: '{part}' is not an index below {len(node)}")
    return int(part)


def _list_item(node: list[Any], part: str, key: str) -> Any:
    return node[_index(node, part, key)]


def planned_steps_bound_s(profile: Profile) -> float:
    """Upper bound of the run's wall time, for the progress display and the safety rail."""
    load = profile.load
    if load.ramp is None:
        return load.duration_s
    ramp = load.ramp
    growth = math.ceil(math.log(ramp.max_per_s / ramp.start_per_s, ramp.factor)) + 1
    return min(ramp.max_steps, growth + 12) * ramp.step_s
