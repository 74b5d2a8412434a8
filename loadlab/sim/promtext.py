"""A tiny Prometheus registry rendering the text exposition format 0.0.4 (for the sim's /metrics).

Counters, gauges and histograms with labels; nothing else (no summaries, no exemplars, no
timestamps). Families are get-or-create: asking twice for the same name and shape returns the same
family, so the API server and the overload model can both declare what they use.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
"""Where kube-apiserver and CoreDNS serve their metrics, and so both parts of the sim."""

# kube-apiserver's apiserver_request_duration_seconds buckets (k8s.io/apiserver
# pkg/endpoints/metrics/metrics.go, Kubernetes 1.32); etcd_request_duration_seconds uses the same
# (pkg/storage/etcd3/metrics/metrics.go).
REQUEST_DURATION_BUCKETS_S = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
# apiserver_request_sli_duration_seconds buckets (same file): no sub-50 ms resolution.
REQUEST_SLI_BUCKETS_S = (
    0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0,
    30.0, 45.0, 60.0,
)  # fmt: skip

REQUEST_TOTAL = "apiserver_request_total"
REQUEST_DURATION = "apiserver_request_duration_seconds"
REQUEST_SLI_DURATION = "apiserver_request_sli_duration_seconds"
APISERVER_COMPONENT = "apiserver"
"""The ``component`` label of every request kube-apiserver itself serves."""
# Label names in the order k8s.io/apiserver declares them (metrics.go, 1.32); request_total adds
# "code" last, the SLI histogram has no "dry_run".
REQUEST_LABELS = (
    "verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component",
)  # fmt: skip
SLI_LABELS = tuple(n for n in REQUEST_LABELS if n != "dry_run")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, +Inf/-Inf/NaN."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        self.name = name
        self.help_text = help_text
        self.label_names = label_names

    def _key(self, values: Sequence[str]) -> tuple[str, ...]:
        if len(values) != len(self.label_names):
            raise ValueError(
                f"{self.name} takes labels {self.label_names}, got {len(values)} values"
            )
        return tuple(str(v) for v in values)

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} {_escape_help(self.help_text)}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _ScalarFamily(_Family):
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[tuple[str, ...], float] = {}
        if not label_names:
            self._values[()] = 0.0

    def get(self, *values: str) -> float:
        return self._values.get(self._key(values), 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_label_text(self.label_names, key)} {format_value(v)}"
            for key, v in sorted(self._values.items())
        ]


class Counter(_ScalarFamily):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def inc(self, *values: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (amount={amount})")
        key = self._key(values)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_ScalarFamily):
    """A value that goes up and down, per label set."""

    kind = "gauge"

    def set(self, value: float, *values: str) -> None:
        self._values[self._key(values)] = float(value)


class Histogram(_Family):
    """Observations counted into cumulative ``le`` buckets, with _sum and _count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, label_names: tuple[str, ...], buckets: Sequence[float]
    ) -> None:
        if "le" in label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        if not bounds:
            raise ValueError(f"histogram {name} needs at least one finite bucket")
        super().__init__(name, help_text, label_names)
        self.bounds = bounds
        # Per label set: per-bucket (non-cumulative) counts incl. +Inf, and the sum.
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, *values: str) -> None:
        key = self._key(values)
        counts = self._counts.setdefault(key, [0] * (len(self.bounds) + 1))
        counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sums[key] = self._sums.get(key, 0.0) + value

    def samples(self) -> list[str]:
        lines: list[str] = []
        names = (*self.label_names, "le")
        for key, counts in sorted(self._counts.items()):
            cumulative = 0
            for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
                cumulative += n
                labels = _label_text(names, (*key, format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {cumulative}")
            plain = _label_text(self.label_names, key)
            lines.append(f"{self.name}_sum{plain} {format_value(self._sums[key])}")
            lines.append(f"{self.name}_count{plain} {cumulative}")
        return lines


F = TypeVar("F", bound=_Family)


class PromRegistry:
    """The families of one process, rendered in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def _find(self, cls: type[F], name: str, labels: tuple[str, ...]) -> F | None:
        existing = self._families.get(name)
        if existing is None:
            return None
        if not isinstance(existing, cls) or existing.label_names != labels:
            raise ValueError(
                f"metric {name} already registered as {existing.kind}{existing.label_names}"
            )
        return existing

    def _add(self, family: F) -> F:
        self._families[family.name] = family
        return family

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        found = self._find(Counter, name, tuple(labels))
        return found or self._add(Counter(name, help_text, tuple(labels)))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        found = self._find(Gauge, name, tuple(labels))
        return found or self._add(Gauge(name, help_text, tuple(labels)))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = REQUEST_DURATION_BUCKETS_S,
    ) -> Histogram:
        found = self._find(Histogram, name, tuple(labels))
        return found or self._add(Histogram(name, help_text, tuple(labels), buckets))

    def observe_request(
        self,
        verb: str,
        resource: str,
        code: int | str,
        seconds: float,
        *,
        group: str = "",
        version: str = "",
        subresource: str = "",
        scope: str = "",
        dry_run: str = "",
        queue_wait_s: float = 0.0,
    ) -> None:
        """Count one finished API request and its duration (what kube-apiserver records).

        The SLI histogram leaves out the time spent queued by APF (``queue_wait_s``), as the
        real one does: SLOs judge the server's work, not how long it made a request wait.
        """
        values = (verb, dry_run, group, version, resource, subresource, scope, APISERVER_COMPONENT)
        self.counter(
            REQUEST_TOTAL,
            "Counter of apiserver requests broken out for each verb, dry run value, group, "
            "version, resource, scope, component, and HTTP response code.",
            (*REQUEST_LABELS, "code"),
        ).inc(*values, str(code))
        self.histogram(
            REQUEST_DURATION,
            "Response latency distribution in seconds for each verb, dry run value, group, "
            "version, resource, subresource, scope and component.",
            REQUEST_LABELS,
        ).observe(seconds, *values)
        self.histogram(
            REQUEST_SLI_DURATION,
            "Response latency distribution (not counting webhook duration and priority & "
            "fairness queue wait times) in seconds for each verb, group, version, resource, "
            "subresource, scope and component.",
            SLI_LABELS,
            REQUEST_SLI_BUCKETS_S,
        ).observe(
            max(0.0, seconds - queue_wait_s),
            *(verb, group, version, resource, subresource, scope, APISERVER_COMPONENT),
        )

    def render(self) -> str:
        """The whole registry in text format 0.0.4 (ends with a newline)."""
        lines: list[str] = []
        for family in self._families.values():
            lines.extend(family.header())
            lines.extend(family.samples())
        return "\n".join(lines) + "\n"
