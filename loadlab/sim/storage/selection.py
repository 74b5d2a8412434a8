"""Label and field selectors, parsed once per request and matched against stored objects.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``.
Field selectors: ``path=value``, ``path==value``, ``path!=value`` over dotted paths
(``spec.nodeName``, ``metadata.name``, ``metadata.namespace``, ``status.phase``...), limited per
kind to the fields the real API server selects on (``FieldSelector.for_kind``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadlab.sim.k8s.validation import go_quote

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_LABEL_NAME})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_LABEL_NAME})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_NAME})\s*$")

# kubernetes pkg/apis/core/v1/conversion.go: the field labels each core kind converts; any other
# label is "field label not supported". Kinds without their own function (ConfigMap, Lease,
# EndpointSlice) take apimachinery runtime DefaultMetaV1FieldSelectorConversion's two.
FIELD_LABELS: dict[str, frozenset[str]] = {
    "Pod": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    "Node": frozenset({"metadata.name", "spec.unschedulable"}),
    "Namespace": frozenset({"metadata.name", "status.phase"}),
    "Service": frozenset({"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
}
_FIELD_LABEL_ALIASES = {("Pod", "spec.host"): "spec.nodeName"}  # for old v1 clients
# The value a selectable field has when the object leaves it out (pod strategy.go and node
# strategy.go format these bools with strconv.FormatBool, so an unset one is "false").
_ABSENT_FIELD_VALUES = {"spec.hostNetwork": "false", "spec.unschedulable": "false"}


class SelectorError(ValueError):
    """A selector the API server would reject with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    """One of ``in``, ``notin``, ``exists``, ``!exists`` (``=`` and ``!=`` become in/notin)."""
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        value = labels.get(self.key)
        if not isinstance(value, str):
            value = None  # only strings can equal a selector's values (and they hash)
        if self.op == "in":
            return value in self.values
        return value not in self.values  # notin: a missing label matches, as in Kubernetes


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (part.strip() for part in parts) if p]


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text:
            return EVERYTHING_LABELS
        reqs: list[Requirement] = []
        for part in _split_top_level(text):
            if m := _SET_RE.match(part):
                values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
                reqs.append(Requirement(m.group(1), m.group(3), values))
            elif m := _CMP_RE.match(part):
                op = "notin" if m.group(3) == "!=" else "in"
                reqs.append(Requirement(m.group(1), op, frozenset((m.group(4),))))
            elif m := _EXISTS_RE.match(part):
                reqs.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
            else:
                raise SelectorError(f"unable to parse requirement: {part!r}")
        return cls(tuple(reqs))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if not self.requirements:
            return True
        labels = labels_of(obj)
        return all(r.matches(labels) for r in self.requirements)


EVERYTHING_LABELS = LabelSelector(())


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata.labels``, or no labels when either is not a map: the API server refuses such
    objects, but a read must never fail on one (an object seeded or stored before checks)."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value at a dotted path, "" when absent (as field selectors see it)."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return _ABSENT_FIELD_VALUES.get(path, "")
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    equal: bool


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...]

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if not text:
            return EVERYTHING_FIELDS
        reqs: list[FieldRequirement] = []
        for part in _split_top_level(text):
            for op, equal in (("!=", False), ("==", True), ("=", True)):
                if op in part:
                    path, _, value = part.partition(op)
                    reqs.append(FieldRequirement(path.strip(), value.strip(), equal))
                    break
            else:
                raise SelectorError(f"invalid field selector: {part!r}")
        return cls(tuple(reqs))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def for_kind(self, kind: str) -> FieldSelector:
        """This selector as the API server takes it for ``kind`` (handlers/get.go converts every
        field label before listing): aliases resolved; a field it cannot select on is a
        ``SelectorError`` with the real message (a 400)."""
        supported = FIELD_LABELS.get(kind)
        reqs: list[FieldRequirement] = []
        for r in self.requirements:
            path = _FIELD_LABEL_ALIASES.get((kind, r.path), r.path)
            if supported is None:
                if path not in ("metadata.name", "metadata.namespace"):
                    raise SelectorError(
                        f"{go_quote(path)} is not a known field selector: only "
                        '"metadata.name", "metadata.namespace"'
                    )
            elif path not in supported:
                raise SelectorError(f"field label not supported: {path}")
            reqs.append(r if path == r.path else FieldRequirement(path, r.value, r.equal))
        return FieldSelector(tuple(reqs))

    def equality(self, path: str) -> str | None:
        """The value this selector requires ``path`` to equal, if it says so."""
        for r in self.requirements:
            if r.equal and r.path == path:
                return r.value
        return None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, r.path) == r.value) == r.equal for r in self.requirements)


EVERYTHING_FIELDS = FieldSelector(())
