"""Profiles: what load to offer, to which target, and what counts as passing.

A profile is YAML validated by pydantic with unknown fields forbidden, so a misspelt field is an
error that names it (and the field meant), not a silently ignored setting. ``--set a.b=value``
overrides any field.

Types are strict where YAML's loose typing would surprise: ``true`` is not a number, ``5`` is not a
name, and every number must be finite and within what one machine can do. The upper bounds are
below; each says why.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from loadlab.analysis.steps import StepCriteria
from loadlab.cluster.settings import AbortSection, LimitsSection
from loadlab.errors import ProfileError
from loadlab.profile_fields import (
    MAX_DURATION_S,
    MAX_LATENCY_MS,
    MAX_PROFILE_BYTES,
    MAX_RAMP_FACTOR,
    MAX_RATE_PER_S,
    MAX_SIZE,
    MAX_STEP_S,
    MAX_TIMEOUT_S,
    Count,
    DnsOp,
    Flag,
    HttpOp,
    Number,
    Text,
    _Strict,
)
from loadlab.scenario import AgentsSection, Phases, Quick, SweepCriteria
from loadlab.shipped import closest_shipped
from loadlab.slos import Requirement, SloSection

PROFILE_SCHEMA = "loadlab.profile/v1"


class ApiSection(_Strict):
    """The profile's ``api:`` section: where the API load goes and what it sends."""

    url: Text | None = Field(default=None, description="None: start the embedded control plane")
    connections: Count = Field(default=64, ge=1, le=10_000)
    timeout_s: Number = Field(
        default=60.0, gt=0, le=MAX_TIMEOUT_S, description="kube-apiserver --request-timeout"
    )
    honour_retry_after: Flag | None = None
    """None: honoured against a real cluster (a kubeconfig context or an allowlisted --api), not
    against loopback servers, where the knee of a server that asks for patience is the point."""
    mix: tuple[HttpOp, ...] = Field(min_length=1)


class DnsSection(_Strict):
    """The profile's ``dns:`` section: which resolver, over how many sockets, which queries."""

    server: Text | None = Field(default=None, description="HOST:PORT; None: the embedded DNS")
    sockets: Count = Field(default=2, ge=1, le=64)
    timeout_s: Number = Field(default=2.0, gt=0, le=MAX_TIMEOUT_S)
    queries: tuple[DnsOp, ...] = Field(min_length=1)


class Ramp(_Strict):
    """Stepped open-loop search of the rate (docs/knee-method.md, 'The method')."""

    start_per_s: Number = Field(gt=0, le=MAX_RATE_PER_S)
    factor: Number = Field(default=2.0, gt=1, le=MAX_RAMP_FACTOR)
    max_per_s: Number = Field(gt=0, le=MAX_RATE_PER_S)
    step_s: Number = Field(default=10.0, gt=0, le=MAX_STEP_S)
    warmup_s: Number = Field(default=2.0, ge=0)
    refine_within: Number = Field(default=0.05, gt=0, lt=1)
    max_steps: Count = Field(default=30, ge=1, le=200)

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
    rate_per_s: Number | None = Field(
        default=None, gt=0, le=MAX_RATE_PER_S, description="fixed open-loop rate"
    )
    concurrency: Count = Field(default=64, ge=1, le=100_000, description="closed loop: in flight")
    duration_s: Number = Field(default=30.0, gt=0, le=MAX_DURATION_S)
    ramp: Ramp | None = None
    # random.Random(-n) is random.Random(n): a negative seed would silently repeat a positive one.
    seed: Count = Field(default=1, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _shape(self) -> Load:
        if self.mode == "open" and self.ramp is None and self.rate_per_s is None:
            raise ValueError("an open-loop load needs rate_per_s or a ramp")
        if self.mode == "closed" and self.ramp is not None:
            raise ValueError("a ramp needs mode: open (a closed loop has no offered rate)")
        return self


_STEP_DEFAULTS = StepCriteria()


class Criteria(_Strict):
    """What makes a step pass (docs/knee-method.md) and what the run's SLO gate checks."""

    # Defaults, with their sources, live once: in loadlab.analysis.steps.StepCriteria.
    max_error_rate: Number = Field(default=_STEP_DEFAULTS.max_error_rate, ge=0, le=1)
    min_sent_ratio: Number = Field(default=_STEP_DEFAULTS.min_sent_ratio, gt=0, le=1)
    max_lag_p99_ms: Number = Field(default=_STEP_DEFAULTS.max_lag_p99_ms, gt=0, le=MAX_LATENCY_MS)
    min_achieved_ratio: Number = Field(default=_STEP_DEFAULTS.min_achieved_ratio, gt=0, le=1)
    max_generator_cpu_percent: Number = Field(
        default=90.0,
        gt=0,
        le=100,
        description="a failing step while the generator used more of its core is its own limit",
    )


class SimSettings(_Strict):
    """Arguments for the embedded control plane when no target URL is given."""

    nodes: Count = Field(default=100, ge=1, le=20_000)
    pods_per_node: Count = Field(default=10, ge=0, le=110)  # docs/control-plane-model.md
    config: Text | None = None
    settings: dict[str, Any] | None = None
    """Inline sim settings (the fields of a ``--config`` file: ``dns``, ``overload``, ``api``...);
    checked by the sim's own validation before the run starts."""

    @model_validator(mode="after")
    def _one_source(self) -> SimSettings:
        if self.config is not None and self.settings is not None:
            raise ValueError("give the sim either 'config' (a file) or 'settings', not both")
        return self


class Profile(_Strict):
    schema_: Text = Field(default=PROFILE_SCHEMA, alias="schema")
    name: Text = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: Text = ""
    api: ApiSection | None = None
    dns: DnsSection | None = None
    load: Load | None = None
    """The request mix's load (with ``api``/``dns``); absent in an agent scenario."""
    criteria: Criteria = Criteria()
    sim: SimSettings = SimSettings()
    interval_s: Number = Field(default=1.0, ge=0.1, le=60)
    agents: AgentsSection | None = None
    """Simulated node agents (loadlab.scenario), run once per entry of ``sizes``."""
    sizes: tuple[Annotated[Count, Field(ge=1, le=MAX_SIZE)], ...] | None = None
    """Cluster sizes (nodes) an agent scenario runs at, in order; default: ``sim.nodes``."""
    phases: Phases = Phases()
    quick: Quick | None = None
    sweep: SweepCriteria = SweepCriteria()
    slo: SloSection = SloSection()
    require: Requirement | None = None
    """What ``--gate`` checks beyond the SLOs (agent scenarios)."""
    allow_contexts: tuple[Text, ...] = ()
    """Kubeconfig contexts this profile may aim load at (with ``--allow-context``)."""
    abort: AbortSection = AbortSection()
    limits: LimitsSection = LimitsSection()

    @model_validator(mode="after")
    def _shape(self) -> Profile:
        if self.agents is None:
            if self.api is None and self.dns is None:
                raise ValueError("a profile needs an 'api' or a 'dns' section (or both)")
            if self.load is None:
                raise ValueError("field 'load' is required (or an 'agents' section)")
            if self.sizes is not None:
                raise ValueError("'sizes' needs an 'agents' section")
            if self.require is not None:
                raise ValueError("'require' (a cluster size to fit) needs an 'agents' section")
        elif self.load is not None:
            raise ValueError(
                "an agent scenario has no 'load': put a request mix under agents.mix instead"
            )
        return self

    @property
    def traffic(self) -> Load:
        """The request mix's load; only agent scenarios have none (the caller branches first)."""
        if self.load is None:
            raise ProfileError(f"profile {self.name}: an agent scenario has no 'load' section")
        return self.load

    @property
    def size_list(self) -> tuple[int, ...]:
        """The sizes an agent scenario runs at."""
        return self.sizes if self.sizes is not None else (self.sim.nodes,)


def load_profile(path: str | Path, overrides: list[str] | None = None) -> Profile:
    """Read, override and validate a profile; every failure is one ProfileError line."""
    raw = _read_mapping(Path(path), str(path))
    for item in overrides or []:
        apply_override(raw, item)
    return validate_profile(raw, source=str(path))


def _read_mapping(p: Path, shown: str) -> dict[str, Any]:  # noqa: C901 - one case per way a file is wrong
    """The profile file's top-level mapping; each way a file can be wrong is one clear line."""
    if not p.exists():
        # A misspelt name, or an old profiles/NAME.yaml path: shipped profiles go by name alone.
        meant = closest_shipped(p.stem)
        hint = f" (did you mean the shipped profile {meant}? loadlab run {meant})" if meant else ""
        raise ProfileError(f"profile {shown}: no such file{hint}")
    if p.is_dir():
        raise ProfileError(f"profile {shown}: is a directory, expected a YAML file")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise ProfileError(f"profile {shown}: not a regular file, expected a YAML file")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"profile {shown}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(
            f"profile {shown}: larger than {MAX_PROFILE_BYTES:,} bytes; is it the right file?"
        )
    try:
        text: str | None = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ProfileError(f"profile {shown}: not a text file (UTF-8 YAML expected)")
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # The context mark is where the broken construct began; the problem mark is often EOF.
        mark = exc.context_mark or exc.problem_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"profile {shown}:{where} is not valid YAML") from None
    except yaml.YAMLError:  # a ReaderError: a control character YAML does not allow
        raise ProfileError(f"profile {shown}: not a text file (UTF-8 YAML expected)") from None
    except ValueError:  # Python refuses to convert an integer of over 4300 digits
        raise ProfileError(f"profile {shown}: holds a number too long to read") from None
    except RecursionError:
        raise ProfileError(f"profile {shown}: nested too deeply to be a profile") from None
    if raw is None:
        raise ProfileError(f"profile {shown}: is empty; expected a mapping with name:, load: ...")
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"a single value ({raw!r:.40})"
        raise ProfileError(
            f"profile {shown}: is {kind}; expected a mapping with name:, load: ... at the top level"
        )
    return raw


def validate_profile(raw: dict[str, Any], *, source: str = "profile") -> Profile:
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{source}: {describe_validation_error(exc)}") from None
    except RecursionError:  # a YAML alias cycle or absurd nesting that survived parsing
        raise ProfileError(f"{source}: nested too deeply to be a profile") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One error, as 'field a.b.c: what was expected (got X)', and how many others there are.

    An unknown field is reported before anything else: a misspelt required field also makes the
    real one "missing", and the typo is the error the user can act on. Errors that only echo the
    reported one (that missing field; a list "too short" because its item failed) are not counted.
    """
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = err["loc"]
    loc = ".".join(str(part) for part in where) or "(top level)"
    kind = err["type"]
    meant = _close_field(where) if kind == "extra_forbidden" else None
    echoes = [
        e
        for e in errors
        if e is not err
        and (
            (e["type"] == "missing" and meant is not None and e["loc"] == (*where[:-1], meant))
            or (e["type"] == "too_short" and e["loc"] == where[: len(e["loc"])])
        )
    ]
    others = len(errors) - 1 - len(echoes)
    more = f"; and {others} more" if others else ""
    if kind == "extra_forbidden":
        names = _field_names_at(where[:-1])
        if meant is not None:
            hint = f"did you mean '{meant}'?"
        elif names:
            hint = f"expected one of: {', '.join(names)}"
        else:
            hint = "see the profile reference in README.md"
        return f"unknown field '{loc}' ({hint}){more}"
    if kind == "missing":
        return f"field '{loc}' is required{more}"
    if not where:  # a rule across fields, whose message names them itself
        return f"{_expected(err)}{more}"
    return f"field '{loc}': {_expected(err)}{_got(err)}{more}"


_BOUND_WORDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _expected(err: Any) -> str:
    """What the field needs, in the profile's words rather than pydantic's."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _BOUND_WORDS:
        key, word = _BOUND_WORDS[kind]
        return f"must be {word} {_number_text(ctx[key])}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind == "string_type":
        return "must be text (quote it in YAML)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a section of fields, not a single value"
    if kind in ("tuple_type", "list_type"):
        return "must be a list"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("Input should "):  # pydantic's wording; the profile's is "must"
        msg = "must " + msg.removeprefix("Input should ")
    return msg


def _number_text(value: Any) -> str:
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:g}"


def _got(err: Any) -> str:
    got = err.get("input")
    if isinstance(got, dict | list):
        return ""
    # pydantic reports a bound's input before or after conversion ('1e9' or 1e9): show both alike.
    text = _number_text(got) if err["type"] in _BOUND_WORDS else repr(got)
    return f" (got {text[:60]}...)" if len(text) > 60 else f" (got {text})"


def _close_field(loc: tuple[int | str, ...]) -> str | None:
    """The field of the section holding the unknown one whose name is closest to it, if any."""
    close = difflib.get_close_matches(str(loc[-1]), _field_names_at(loc[:-1]), n=1, cutoff=0.6)
    return close[0] if close else None


def _field_names_at(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] | None = Profile
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):  # an item of a list of sections: the same model
            continue
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        field = fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section model inside ``X``, ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the raw profile mapping, in place.

    A section can be replaced by a mapping (``load.ramp={start_per_s: 1, max_per_s: 9}``) or
    removed with ``null``, but not by a single value: that is nearly always a missing ``.field``.
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ProfileError(f"--set {item!r}: expected key=value, e.g. load.ramp.max_per_s=5000")
    parts = key.split(".")
    if any(not part.strip() for part in parts):
        raise ProfileError(f"--set {key}: empty part in the key; expected e.g. load.rate_per_s")
    parts = [part.strip() for part in parts]
    try:
        parsed = yaml.safe_load(value) if value else None
    except (yaml.YAMLError, ValueError, RecursionError):
        parsed = value
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(node, part, key)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ProfileError(f"--set {key}: '{here}' is a single value, not a section")
        if not isinstance(node, dict | list):
            raise ProfileError(f"--set {key}: '{here}' is a single value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, key)
        _check_replacement(node[index], parsed, key)
        node[index] = parsed
    else:
        _check_replacement(node.get(last), parsed, key)
        node[last] = parsed


def _check_replacement(old: Any, new: Any, key: str) -> None:
    if isinstance(old, dict) and not isinstance(new, dict | None):
        raise ProfileError(f"--set {key}: '{key}' is a section; set a field, e.g. {key}.FIELD=...")
    if isinstance(old, list) and not isinstance(new, list | None):
        raise ProfileError(f"--set {key}: '{key}' is a list; set an item, e.g. {key}.0.FIELD=...")


def _index(node: list[Any], part: str, key: str) -> int:
    if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
        where = f"0 to {len(node) - 1}" if node else "none: the list is empty"
        raise ProfileError(f"--set {key}: '{part}' is not an index of the list (indices: {where})")
    return int(part)
