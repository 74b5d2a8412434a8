"""Sets of field paths, as server-side apply records who owns what (``metadata.managedFields``).

A path is a tuple of path elements, each kept as the string FieldsV1 writes it, so the wire form
needs no translation (sigs.k8s.io/structured-merge-diff fieldpath/serialize-pe.go):
``f:<name>`` a field of a struct or map, ``k:<JSON object>`` the item of a list keyed by those
fields (sorted by name), ``v:<JSON value>`` the item of a set, ``i:<n>`` an index. A FieldsV1
document is the set as a trie: each element a key, ``{}`` a path that is a member, ``".": {}``
inside a node that is a member and has children too (fieldpath/serialize.go ``emitContentsV1``).

Elements are ordered as ``PathElement.Compare`` orders them (fields, then keys, then values, then
indices; values numbers < strings < booleans < lists < maps < null), so an encoded set matches
the real server's byte for byte. Elements are made canonical when built or decoded (keys sorted,
compact JSON with Go's HTML escaping), so equal elements are equal strings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from loadlab.sim.k8s.objects import JsonObj

Path = tuple[str, ...]
_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}
# encoding/json (and jsoniter's standard-library mode) escape these even inside strings.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ORDER_CACHE = 4096  # distinct path elements whose order key is kept; not from a reference


class FieldsError(ValueError):
    """A FieldsV1 document (or a path element in it) that does not parse."""


def go_json(value: Any) -> str:
    """``value`` as Go's encoding/json writes it: compact, ``<>&`` escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def field(name: str) -> str:
    return f"f:{name}"


def key(fields: Mapping[str, Any]) -> str:
    """The element of a list item identified by its key fields (``k:{"name":"app"}``)."""
    ordered = {name: fields[name] for name in sorted(fields)}
    return "k:" + go_json(ordered)


def value(item: Any) -> str:
    """The element of a set item (``v:"kubernetes"``)."""
    return "v:" + go_json(item)


def index(i: int) -> str:
    return f"i:{i}"


def canonical(element: str) -> str:
    """``element`` re-encoded the way this module writes it; FieldsError when it is malformed.
    An unknown type letter is returned as is (readIterV1 drops such keys; so does ``decode``)."""
    if len(element) < 2:
        raise FieldsError("key must be 2 characters long:")
    kind, sep, body = element[0], element[1], element[2:]
    if sep != ":":
        raise FieldsError(f"missing colon: {element}")
    if kind == "f":
        return element
    if kind == "i":
        try:
            return index(int(body))
        except ValueError as exc:
            raise FieldsError(str(exc)) from exc
    if kind not in ("k", "v"):
        return element
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise FieldsError(f"parsing key as path element: {exc}") from exc
    if kind == "v":
        return value(parsed)
    if not isinstance(parsed, dict):
        raise FieldsError("parsing key as path element: expected an object")
    return key(parsed)


def _value_order(item: Any) -> tuple[Any, ...]:
    """value.Compare: numbers (ints and floats together) < strings < booleans < lists < maps <
    null."""
    if isinstance(item, bool):
        return (2, item)
    if isinstance(item, int | float):
        return (0, item)
    if isinstance(item, str):
        return (1, item)
    if isinstance(item, list):
        return (3, tuple(_value_order(x) for x in item))
    if isinstance(item, dict):
        return (4, tuple((k, _value_order(item[k])) for k in sorted(item)))
    return (5,)


@functools.lru_cache(maxsize=_ORDER_CACHE)
def order(element: str) -> tuple[Any, ...]:
    """A sort key that orders elements as PathElement.Compare does."""
    kind, body = element[0], element[2:]
    rank = _RANK.get(kind, 4)
    if kind == "f":
        return (rank, body)
    if kind == "i":
        return (rank, int(body))
    if kind == "k":
        parsed = json.loads(body)
        return (rank, tuple((name, _value_order(parsed[name])) for name in sorted(parsed)))
    if kind == "v":
        return (rank, _value_order(json.loads(body)))
    return (rank, body)


def _go_string(item: Any) -> str:
    """value.ToString: strings quoted (%q), the rest as Go prints them."""
    if isinstance(item, str):
        return json.dumps(item, ensure_ascii=False)
    if isinstance(item, bool):
        return "true" if item else "false"
    if item is None:
        return "null"
    if isinstance(item, list):
        return "[" + ",".join(_go_string(x) for x in item) + "]"
    if isinstance(item, dict):
        return "".join(f"{k}={_go_string(v)}" for k, v in item.items())
    return str(item)


def element_string(element: str) -> str:
    """PathElement.String: ``.name``, ``[name="app"]``, ``[="x"]``, ``[0]``."""
    kind, body = element[0], element[2:]
    if kind == "f":
        return "." + body
    if kind == "i":
        return f"[{body}]"
    parsed = json.loads(body)
    if kind == "v":
        return f"[={_go_string(parsed)}]"
    return "[" + ",".join(f"{k}={_go_string(v)}" for k, v in parsed.items()) + "]"


def path_string(path: Path) -> str:
    """Path.String: ``.spec.containers[name="app"].image``, as conflicts name a field."""
    return "".join(element_string(e) for e in path)


class FieldSet:
    """A set of paths, as a trie: ``members`` are the elements that end a path here, ``children``
    the subsets below an element. Treated as a value once built: operations return new sets."""

    __slots__ = ("children", "members")

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self.members: set[str] = set()
        self.children: dict[str, FieldSet] = {}
        for path in paths:
            self.insert(path)

    def insert(self, path: Path) -> None:
        node = self
        for element in path[:-1]:
            node = node.children.setdefault(element, FieldSet())
        if path:
            node.members.add(path[-1])

    def has(self, path: Path) -> bool:
        node: FieldSet | None = self
        for element in path[:-1]:
            node = node.children.get(element) if node is not None else None
        return node is not None and bool(path) and path[-1] in node.members

    def child(self, element: str) -> FieldSet | None:
        """The paths below ``element`` (without it), or None: Set.WithPrefix."""
        return self.children.get(element)

    def empty(self) -> bool:
        return not self.members and not self.children

    def paths(self, prefix: Path = ()) -> Iterator[Path]:
        """Every member path, in the order the real server iterates a set."""
        for element in sorted(self.members | self.children.keys(), key=order):
            if element in self.members:
                yield (*prefix, element)
            below = self.children.get(element)
            if below is not None:
                yield from below.paths((*prefix, element))

    def union(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members | other.members
        for element in self.children.keys() | other.children.keys():
            mine, theirs = self.children.get(element), other.children.get(element)
            if mine is None or theirs is None:
                out.children[element] = (mine or theirs or FieldSet()).copy()
            else:
                out.children[element] = mine.union(theirs)
        return out

    def difference(self, other: FieldSet) -> FieldSet:
        """Members of ``self`` that are not members of ``other`` (exact paths: a member of
        ``other`` does not remove the paths below it)."""
        out = FieldSet()
        out.members = self.members - other.members
        for element, mine in self.children.items():
            theirs = other.children.get(element)
            below = mine.copy() if theirs is None else mine.difference(theirs)
            if not below.empty():
                out.children[element] = below
        return out

    def intersection(self, other: FieldSet) -> FieldSet:
        out = FieldSet()
        out.members = self.members & other.members
        for element, mine in self.children.items():
            theirs = other.children.get(element)
            if theirs is not None:
                below = mine.intersection(theirs)
                if not below.empty():
                    out.children[element] = below
        return out

    def copy(self) -> FieldSet:
        out = FieldSet()
        out.members = set(self.members)
        out.children = {e: s.copy() for e, s in self.children.items()}
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldSet):
            return NotImplemented
        return self.members == other.members and self.children == other.children

    __hash__ = None  # type: ignore[assignment]  # mutable while built

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self.paths()]})"

    def encode(self) -> JsonObj:
        """The FieldsV1 document (a JSON object), keys in the real server's order."""
        return self._emit(include_self=False)

    def _emit(self, *, include_self: bool) -> JsonObj:
        out: JsonObj = {}
        if include_self and not self.empty():
            out["."] = {}
        for element in sorted(self.members | self.children.keys(), key=order):
            below = self.children.get(element)
            if below is None:
                out[element] = {}
            else:
                out[element] = below._emit(include_self=element in self.members)
        return out

    @classmethod
    def decode(cls, doc: Any) -> FieldSet:
        """A FieldsV1 document as a set; FieldsError when it is not one (fieldpath readIterV1:
        ``{}`` or ``"."`` marks a member; elements of an unknown type are dropped)."""
        if not isinstance(doc, dict):
            raise FieldsError("FieldsV1 must be a JSON object")
        found, _ = cls._read(doc)
        return found if found is not None else FieldSet()

    @classmethod
    def _read(cls, doc: JsonObj) -> tuple[FieldSet | None, bool]:
        children: FieldSet | None = None
        is_member = False
        for raw, below in doc.items():
            if raw == ".":
                is_member = True
                continue
            element = canonical(raw)
            if element[0] not in _RANK:
                continue
            if not isinstance(below, dict):
                raise FieldsError(f"FieldsV1 value of {raw!r} must be a JSON object")
            grand, child_is_member = cls._read(below)
            if children is None:
                children = FieldSet()
            if child_is_member:
                children.members.add(element)
            if grand is not None:
                children.children[element] = grand
        return children, children is None or is_member
