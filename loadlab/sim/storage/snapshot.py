"""Reads at a past resourceVersion: one collection as it was at R, rebuilt from its event log.

The store keeps only current objects. The state at R is the current state with every change after
R undone: a key written after R held, at R, the old object of its first change after R (nothing,
if that change created it). Nothing is copied: a read at R walks the events since R (at most the
event window) and a read at the current version walks none.

This is what makes a paged LIST one snapshot, as etcd serves it (etcd3 store.go GetList reads
every page at the revision its continue token carries): each page is the state the first page
saw, whatever was written in between. A token whose version has left the window gets 410 with a
token that resumes at the latest version (etcd3 errors.go); ``resourceVersionMatch=Exact`` reads
at R the same way, or 410 once R has left the window.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import json
from dataclasses import dataclass

from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.storage.collection import Collection, Key, key_of
from loadlab.sim.storage.errors import Invalid
from loadlab.sim.storage.selection import FieldSelector, LabelSelector

CONTINUE_API_VERSION = "meta.k8s.io/v1"
LATEST = -1
"""A continue token's version meaning "the latest" (etcd3 errors.go: rv -1, not 0, so that a bad
token with no version is still refused)."""
# k8s.io/apiserver pkg/storage/etcd3/errors.go, word for word: what a client is told.
LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)
# k8s.io/apiserver pkg/storage/continue.go ErrInvalidStartRV.
_ZERO_VERSION = (
    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
)


@dataclass(frozen=True)
class ListResult:
    items: list[JsonObj]
    resource_version: int
    """The version the page shows; every later page of the same list shows it too."""
    continue_token: str | None
    remaining: int | None
    """Objects left after this page (an upper bound), when paging."""


def undone_since(table: Collection, rv: int) -> dict[Key, JsonObj | None]:
    """Each key written after ``rv``, with its object at ``rv`` (None: it did not exist).

    The caller checks that ``rv`` is still inside the event window (``table.floor_rv``)."""
    undone: dict[Key, JsonObj | None] = {}
    for change in reversed(table.log):
        if change.rv <= rv:
            break
        # Walking back: the first change after rv is written last.
        undone[key_of(table.rtype, change.obj)] = change.old
    return undone


def read_page(
    table: Collection,
    namespace: str | None,
    *,
    labels: LabelSelector,
    fields: FieldSelector,
    limit: int,
    start: Key | None,
    rv: int,
    undone: dict[Key, JsonObj | None],
) -> ListResult:
    """Up to ``limit`` objects (0: all) after key ``start``, as they were at ``rv``, where
    ``undone`` is ``undone_since(table, rv)``."""
    keys = table.candidates(namespace, fields)
    if undone:
        # Keys that match at rv but no longer do (or are gone) are not among the candidates.
        gone = sorted(
            k
            for k, obj in undone.items()
            if obj is not None and (namespace is None or k[0] == namespace) and not _has(keys, k)
        )
        if gone:
            keys = list(heapq.merge(keys, gone))
    objects = table.objects
    pos = bisect.bisect_right(keys, start) if start is not None else 0
    items: list[JsonObj] = []
    last: Key | None = None
    for i in range(pos, len(keys)):
        key = keys[i]
        obj = undone[key] if key in undone else objects.get(key)
        if obj is None or not labels.matches(obj) or not fields.matches(obj):
            continue
        if limit and len(items) == limit:
            token = encode_continue(rv, last) if last is not None else None
            return ListResult(items, rv, token, len(keys) - i)
        items.append(obj)
        last = key
    return ListResult(items, rv, None, None)


def _has(keys: list[Key], key: Key) -> bool:
    i = bisect.bisect_left(keys, key)
    return i < len(keys) and keys[i] == key


def encode_continue(rv: int, last: Key) -> str:
    """A continue token: the version every page is read at and the last key served (the shape
    of storage/continue.go's token; the key is the sim's own)."""
    raw = json.dumps({"v": CONTINUE_API_VERSION, "rv": rv, "start": list(last)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, Key]:
    """(version, last key served) of a token; ``LATEST`` (or any negative version) means the
    current state. A token that does not decode is 400, as ValidateListOptions words it."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        rv, start = int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        binascii.Error,
        OverflowError,  # {"rv": 1e999}
        RecursionError,  # a token of deeply nested JSON
    ) as exc:
        raise Invalid(f"invalid continue token: {exc}") from exc
    if rv == 0:
        raise Invalid(f"invalid continue token: {_ZERO_VERSION}")
    return rv, start
