"""The building blocks of profile validation: strict field types, their bounds, and the
operation entries (HTTP and DNS) that several profile sections share.

Types are strict where YAML's loose typing would surprise: ``true`` is not a number, ``5`` is not
a name, and every number must be finite and within what one machine can do. The upper bounds are
below; each says why.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)
from pydantic_core import PydanticCustomError

from loadlab.targets.dns_wire import dns_op_name

# Upper bounds: far above anything useful, low enough that a typo (an extra zero, 1e9) is refused
# here rather than hanging the run or exhausting memory.
MAX_RATE_PER_S = 1_000_000
"""10x the generator's ~100k sends/s per core (loadlab/engine/runner.py): an absurd but finite rate
still reaches the run, which then reports itself as the limit (exit 4)."""
MAX_DURATION_S = 86_400  # one day
MAX_STEP_S = 3_600  # one hour per ramp step
MAX_TIMEOUT_S = 3_600  # kube-apiserver's --request-timeout defaults to 60 s; an hour is generous
MAX_LATENCY_MS = MAX_TIMEOUT_S * 1000
"""No p99 above the longest timeout can be measured, so no SLO or lag limit may exceed it."""
MAX_WEIGHT = 1_000_000
MAX_SPREAD = 100_000
"""Paths and bodies are pre-rendered once per value of {i}: 100k URLs take ~40 MB and ~1 s to
build (measured with yarl), 1M ~400 MB per operation. The sim's largest cluster is 20k nodes."""
MAX_RAMP_FACTOR = 100  # a x100 step jumps past any knee at once; bisection then does all the work
MAX_PROFILE_BYTES = 1_000_000  # the shipped profiles are ~2 kB; a larger file is the wrong file


def _number(value: object) -> object:
    """Before every float field: a finite int or float, never a boolean."""
    if isinstance(value, bool):
        raise PydanticCustomError("number_not_bool", "must be a number, not true/false")
    if isinstance(value, str):
        # PyYAML follows YAML 1.1, where 1e9 (an exponent without a dot) is a string, not a float.
        try:
            value = float(value)
        except ValueError:
            raise PydanticCustomError("number_type", "must be a number") from None
    if isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:
            raise PydanticCustomError("finite_number", "must be a finite number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return value


def _whole_number(value: object) -> object:
    """Before every int field: YAML's ``true`` would otherwise become 1."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_not_bool", "must be a whole number, not true/false")
    return value


Number = Annotated[float, BeforeValidator(_number), AllowInfNan(False)]
"""A float field: ints are fine (``rate_per_s: 200``); booleans, inf and NaN are not."""
Count = Annotated[int, BeforeValidator(_whole_number)]
"""An int field that refuses booleans."""
Flag = Annotated[bool, Strict()]
"""A bool field that takes only true/false, not 1 or "yes" (YAML already reads yes/no as bools)."""
Text = Annotated[str, Strict()]
MAX_SIZE = 20_000
"""Nodes in one cluster size: the sim's own bound (4x the supported 5,000 of
docs/control-plane-model.md, "Supported scale")."""
Fraction = Annotated[Number, Field(ge=0, le=1)]
"""A share of something: an error rate, a probability."""
"""A str field: a number or a boolean is refused rather than turned into text."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpOp(_Strict):
    """One entry of the API request mix."""

    name: Text = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: Text = Field(pattern=r"^/")
    body: Text | None = None
    content_type: Text = "application/json"
    weight: Number = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    spread: Count = Field(
        default=1, ge=1, le=MAX_SPREAD, description="render {i} in path/body as 0..spread-1"
    )
    user: Text | None = Field(default=None, description="bearer token = identity in the sim")
    slo_p99_ms: Number | None = Field(
        default=None,
        gt=0,
        le=MAX_LATENCY_MS,
        description="None: the profile's slo: by the call's shape (1 s one object, 30 s LIST)",
    )


class DnsOp(_Strict):
    """One entry of the DNS query mix."""

    name: Text
    type: Literal["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "MX", "NS", "SOA"] = "A"
    weight: Number = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    expect_nxdomain: Flag = False
    slo_p99_ms: Number | None = Field(
        default=None, gt=0, le=MAX_LATENCY_MS, description="None: the profile's slo.dns.p99_ms"
    )

    @property
    def op_name(self) -> str:
        return dns_op_name(self.name, self.type)
