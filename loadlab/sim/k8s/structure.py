"""The four walks server-side apply makes over objects, typed by ``fieldtypes``.

They are sigs.k8s.io/structured-merge-diff's (typed/tofieldset.go, compare.go, merge.go,
remove.go, fieldpath/set.go EnsureNamedFieldsAreMembers), over plain JSON values: ``field_set``
(what an applied configuration sets), ``compare`` (what a write added, changed and removed),
``merge`` (an applied configuration over the live object, list items by key, in the library's
order) and ``remove`` (pruning what an applier stopped applying).

Simplified, on purpose: fields the sim's schema table does not declare are leaves in ``compare``,
``merge`` and ``remove`` (they only reach the store with ``fieldValidation=Warn``), and a value of
the wrong JSON type is a leaf too (``field_set`` refuses both for an applied configuration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from loadlab.sim.k8s import fieldpath
from loadlab.sim.k8s.fieldpath import FieldSet, Path
from loadlab.sim.k8s.fieldtypes import (
    Node,
    TypedError,
    TypedErrors,
    below,
    child,
    element_of,
    item,
    node,
)


class _Missing:
    """An absent value (JSON null is None, and present)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def _fits(n: Node, value: Any) -> bool:
    if value is MISSING or value is None:
        return True
    if n.kind == "list":
        return isinstance(value, list)
    return n.kind == "scalar" or isinstance(value, dict)


def _leaf(n: Node, lhs: Any, rhs: Any) -> bool:
    if n.kind == "scalar" or n.atomic or not (_fits(n, lhs) and _fits(n, rhs)):
        return True
    return not lhs and not rhs  # both empty or absent: "emptyPromoteToLeaf"


# -- what a configuration sets --------------------------------------------------------------


def field_set(value: Any, n: Node) -> FieldSet:
    """Every path ``value`` sets (typed.ToFieldSet), refusing what ObjectToTyped refuses."""
    out = FieldSet()
    errors: list[TypedError] = []
    _to_set(value, n, (), out, errors)
    if errors:
        raise errors[0] if len(errors) == 1 else TypedErrors(errors)
    return out


def _to_set(value: Any, n: Node, path: Path, out: FieldSet, errors: list[TypedError]) -> None:
    if n.kind == "scalar" or n.atomic:
        if path:
            out.insert(path)
        return
    if value is None:
        return
    if n.kind == "list":
        _list_to_set(value, n, path, out, errors)
        return
    if not isinstance(value, dict):
        errors.append(TypedError(path, f"expected map, got {type(value).__name__}"))
        return
    for name, sub in value.items():
        at = (*path, fieldpath.field(name))
        typed = child(n, name)
        if typed is None:
            errors.append(TypedError(at, "field not declared in schema"))
            continue
        _to_set(sub, typed, at, out, errors)
        if sub is None or sub == {} or n.kind == "map":
            out.insert(at)


def _list_to_set(value: Any, n: Node, path: Path, out: FieldSet, errors: list[TypedError]) -> None:
    if not isinstance(value, list):
        errors.append(TypedError(path, f"expected list, got {type(value).__name__}"))
        return
    seen: set[str] = set()
    for i, entry in enumerate(value):
        try:
            element = element_of(entry, n, path, i)
        except TypedError as exc:
            errors.append(exc)
            continue
        if element in seen:
            shown = fieldpath.element_string(element)
            errors.append(TypedError(path, f"duplicate entries for key {shown}"))
            continue
        seen.add(element)
        _to_set(entry, item(n), (*path, element), out, errors)
        out.insert((*path, element))


# -- what a write changed -------------------------------------------------------------------


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=FieldSet)
    modified: FieldSet = field(default_factory=FieldSet)
    removed: FieldSet = field(default_factory=FieldSet)


def compare(lhs: Any, rhs: Any, n: Node) -> Comparison:
    """What turning ``lhs`` into ``rhs`` added, modified and removed (typed.Compare). Equal
    subtrees are skipped at C speed: most of a write leaves most of an object alone."""
    out = Comparison()
    _compare(lhs, rhs, n, (), out)
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality (Python's ``==`` says True == 1)."""
    return (isinstance(a, bool) == isinstance(b, bool)) and bool(a == b)


def _compare(lhs: Any, rhs: Any, n: Node, path: Path, out: Comparison) -> None:
    if lhs is rhs or (type(lhs) is type(rhs) and isinstance(lhs, dict | list) and lhs == rhs):
        return  # equal containers (True == 1 inside them is a difference this cannot see)
    if _leaf(n, lhs, rhs):
        if lhs is MISSING:
            out.added.insert(path)
        elif rhs is MISSING:
            out.removed.insert(path)
        elif not _same(lhs, rhs):
            out.modified.insert(path)
        return
    if n.kind == "list":
        _compare_items(
            lhs if isinstance(lhs, list) else [], rhs if isinstance(rhs, list) else [], n, path, out
        )
    else:
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        for name in {**left, **right}:
            typed = child(n, name) or node(n.rtype, "string")
            at = (*path, fieldpath.field(name))
            _compare(left.get(name, MISSING), right.get(name, MISSING), typed, at, out)
    if path and lhs is MISSING:
        out.added.insert(path)
    elif path and rhs is MISSING:
        out.removed.insert(path)


def _index(items: list[Any], n: Node, path: Path) -> dict[str, list[Any]] | None:
    found: dict[str, list[Any]] = {}
    for i, entry in enumerate(items):
        try:
            found.setdefault(element_of(entry, n, path, i), []).append(entry)
        except TypedError:
            return None
    return found


def _compare_items(lhs: list[Any], rhs: list[Any], n: Node, path: Path, out: Comparison) -> None:
    left, right = _index(lhs, n, path), _index(rhs, n, path)
    if left is None or right is None:  # items without keys: compared whole
        if not _same(lhs, rhs):
            out.modified.insert(path)
        return
    each = item(n)
    for element in {**left, **right}:
        ls, rs = left.get(element, []), right.get(element, [])
        at = (*path, element)
        if len(ls) <= 1 and len(rs) <= 1:
            _compare(ls[0] if ls else MISSING, rs[0] if rs else MISSING, each, at, out)
        elif len(ls) >= 2 and len(rs) >= 2:
            if not _same(ls, rs):
                out.modified.insert(at)
        elif len(ls) >= 2:
            if rs:
                _compare(MISSING, rs[0], each, at, out)
            out.removed.insert(at)
        else:
            if ls:
                _compare(ls[0], MISSING, each, at, out)
            out.added.insert(at)


# -- merging a configuration into the live object -------------------------------------------


def merge(lhs: Any, rhs: Any, n: Node) -> Any:
    """``rhs`` (a configuration) over ``lhs`` (the live object): typed.Merge. A null in ``rhs``
    removes the field (the typed object drops it)."""
    if rhs is MISSING:
        return lhs
    if lhs is MISSING or lhs is None or _leaf(n, lhs, rhs):
        return rhs
    if n.kind == "list":
        return _merge_items(lhs, rhs, n)
    out = dict(lhs)
    for name, sub in rhs.items():
        if sub is None:
            out.pop(name, None)
            continue
        typed = child(n, name) or node(n.rtype, "string")
        out[name] = merge(lhs.get(name, MISSING), sub, typed)
    return out


def _merge_items(lhs: list[Any], rhs: list[Any], n: Node) -> list[Any]:
    """typed/merge.go visitListItems: live items keep their places, the configuration's come in
    its order, interleaved around the items both hold."""
    each = item(n)
    lpes = [(element_of(x, n, (), i), x) for i, x in enumerate(lhs)]
    rpes = [element_of(x, n, (), i) for i, x in enumerate(rhs)]
    robs = dict(zip(rpes, rhs, strict=True))
    lobs: dict[str, Any] = {}
    for element, entry in lpes:
        lobs[element] = None if element in lobs else entry  # a duplicate merges as null
    shared = [e for e in rpes if e in lobs]
    upcoming = shared.pop(0) if shared else None
    merged: set[str] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            element = lpes[li][0]
            if element == rpes[ri]:
                merged.add(element)
                out.append(merge(lobs[element] or MISSING, robs[element], each))
                li, ri = li + 1, ri + 1
                upcoming = shared.pop(0) if shared else None
                continue
            if element in robs and upcoming is not None and upcoming != element:
                li += 1
                continue
        if li < len(lpes):
            element, entry = lpes[li]
            if element not in robs:
                out.append(entry)
                li += 1
                continue
            if element in merged:
                li += 1
        if ri < len(rpes):
            element = rpes[ri]
            merged.add(element)
            out.append(merge(lobs.get(element) or MISSING, robs[element], each))
            ri += 1
            if upcoming is not None and upcoming == element:
                upcoming = shared.pop(0) if shared else None
    return out


# -- pruning --------------------------------------------------------------------------------


def remove(value: Any, paths: FieldSet, n: Node) -> Any:
    """``value`` without the members of ``paths`` (typed.RemoveItems); a map or list left empty
    goes too (MISSING), as the typed object drops it."""
    if paths.empty() or n.kind == "scalar" or n.atomic or not _fits(n, value) or not value:
        return value
    if n.kind == "list":
        kept: list[Any] = []
        for i, entry in enumerate(value):
            try:
                element = element_of(entry, n, (), i)
            except TypedError:
                kept.append(entry)
                continue
            if element in paths.members:
                continue
            sub = paths.child(element)
            entry = remove(entry, sub, item(n)) if sub is not None else entry
            if entry is not MISSING:
                kept.append(entry)
        return kept or MISSING
    out = {}
    for name, sub_value in value.items():
        element = fieldpath.field(name)
        if element in paths.members:
            continue
        sub = paths.child(element)
        typed = child(n, name)
        if sub is not None and typed is not None:
            sub_value = remove(sub_value, sub, typed)
        if sub_value is not MISSING:
            out[name] = sub_value
    return out or MISSING


def with_named_fields(paths: FieldSet, n: Node | None) -> FieldSet:
    """Set.EnsureNamedFieldsAreMembers: a struct field with paths below it is a member too (a
    map key or list item is not), so that pruning can remove the whole field."""
    out = FieldSet()
    out.members = set(paths.members)
    for element, sub in paths.children.items():
        typed = below(n, element) if n is not None else None
        if n is not None and n.kind == "struct" and element.startswith("f:") and typed:
            out.members.add(element)
        out.children[element] = with_named_fields(sub, typed)
    return out
