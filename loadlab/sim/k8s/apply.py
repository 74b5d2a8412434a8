"""Server-side apply and field ownership: who manages which field (``metadata.managedFields``).

Every create, update and patch records an ``Update`` entry for its field manager with the fields
it changed, taking them from whoever had them; an apply (``application/apply-patch+yaml``) merges
the applied configuration into the live object (``structure.merge``), records an ``Apply`` entry
with exactly the fields it sets, removes what the manager applied before and no longer applies
unless someone else owns it, and refuses, with 409 Conflict, to change a field another manager
owns unless forced (then it takes the field). Sources: k8s.io/apimachinery
pkg/util/managedfields/internal (fieldmanager.go, structuredmerge.go, managedfieldsupdater.go,
skipnonapplied.go, stripmeta.go, capmanagers.go) and sigs.k8s.io/structured-merge-diff
merge/update.go; the entries themselves are ``managedfields``.

What is faithful: the entry format and order, manager identities (an Apply entry is one per
manager whatever its apiVersion), the Update bookkeeping (the time moves only when the write took
fields), objects without managedFields staying untracked until their first apply, which hands every
existing field to ``before-first-apply``, the cap of 10 Update entries (``ancient-changes``), the
stripped metadata fields, ``status`` ignored on the main resource, the conflict Status.
Simplifications, on purpose: one API version per kind (no conversion); a status-subresource write
keeps the stored metadata (the store's rule), so it records no ownership; the
``kubectl.kubernetes.io/last-applied-configuration`` interplay (LastAppliedManager/Updater) is
not modelled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from loadlab.sim.k8s import fieldtypes, structure
from loadlab.sim.k8s.fieldpath import FieldsError, FieldSet
from loadlab.sim.k8s.fieldtypes import TypedError
from loadlab.sim.k8s.managedfields import (
    APPLY,
    UPDATE,
    Managed,
    ManagerId,
    Ownership,
    conflict_error,
    decode_managed,
    encode_managed,
)
from loadlab.sim.k8s.objects import ENDPOINTSLICES, PODS, JsonObj, ResourceType
from loadlab.sim.k8s.structure import MISSING
from loadlab.sim.k8s.validation import ApiError, bad_request

MAX_UPDATE_MANAGERS: Final = 10  # managedfields DefaultMaxUpdateManagers
BEFORE_FIRST_APPLY: Final = "before-first-apply"  # skipnonapplied.go
ANCIENT_CHANGES: Final = "ancient-changes"  # capmanagers.go
# stripmeta.go: fields no manager ever owns.
_STRIPPED = FieldSet(
    [
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        *(
            ("f:metadata", f"f:{name}")
            for name in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    ]
)
# The fields a new Go object of each kind already has (omitempty-less fields and value structs):
# what a create or ``before-first-apply`` is compared against, so ``spec`` reads as kept, not added.
_ZERO_EXTRAS: dict[ResourceType, JsonObj] = {
    PODS: {"spec": {"containers": None}},
    ENDPOINTSLICES: {"addressType": "", "endpoints": None, "ports": None},
}
# -- recording an update --------------------------------------------------------------------


def zero_object(rtype: ResourceType) -> JsonObj:
    """A new empty object of the kind, as a Go ``New()`` reads: what a create started from."""
    declared = fieldtypes.root(rtype).fields
    zero: JsonObj = {"metadata": {}}
    zero |= {name: {} for name in ("spec", "status") if name in declared}
    for name, extra in _ZERO_EXTRAS.get(rtype, {}).items():
        zero[name] = {**zero[name], **extra} if isinstance(extra, dict) else extra
    return zero


def _view(obj: JsonObj, rtype: ResourceType, subresource: str | None) -> JsonObj:
    """What ownership is computed over: no managedFields, and no ``status`` on the main
    resource (its reset fields) or only ``status`` on the status subresource."""
    if subresource == "status":
        view = {k: v for k, v in obj.items() if k in ("apiVersion", "kind", "status")}
    else:
        view = {k: v for k, v in obj.items() if not (k == "status" and rtype.has_status)}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        view["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return view


def _live_or_new(live: JsonObj | None, new: JsonObj) -> Managed:
    """fieldmanager.go decodeLiveOrNew: the request's entries when it sent valid ones (an empty
    list resets them), else the live object's."""
    sent = (new.get("metadata") or {}).get("managedFields")
    if isinstance(sent, list) and (not sent or sent == [{}]):
        return {}
    try:
        decoded = decode_managed(sent) if sent else {}
    except (ValueError, FieldsError):
        decoded = {}
    if decoded:
        return decoded
    try:
        return decode_managed(((live or {}).get("metadata") or {}).get("managedFields"))
    except (ValueError, FieldsError):
        return {}


def _with_managed(obj: JsonObj, managed: Managed) -> JsonObj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    if managed:
        meta["managedFields"] = encode_managed(managed)
    return {**obj, "metadata": meta}


def track_update(
    live: JsonObj | None,
    new: JsonObj,
    rtype: ResourceType,
    *,
    manager: str,
    now: str,
    subresource: str | None = None,
) -> JsonObj:
    """``new`` (a create when ``live`` is None, else an update or a non-apply patch of ``live``)
    with its managedFields: FieldManager.UpdateNoErrors."""
    if subresource:
        return new  # the store keeps the stored metadata on a status write
    managed = _live_or_new(live, new)
    if not managed and live is not None:
        return _with_managed(new, {})  # skipnonapplied: never applied, not tracked
    base = live if live is not None else zero_object(rtype)
    who = ManagerId(manager, UPDATE, rtype.api_version)
    return _with_managed(new, _updated(base, new, managed, who, now, rtype, None))


def _updated(
    live: JsonObj,
    new: JsonObj,
    managed: Managed,
    who: ManagerId,
    now: str,
    rtype: ResourceType,
    subresource: str | None,
) -> Managed:
    """managedFieldsUpdater over Updater.Update: the changed fields move to ``who`` (whose time
    moves only if it took any), removed fields leave everyone; then the cap."""
    change = structure.compare(
        _view(live, rtype, subresource), _view(new, rtype, subresource), fieldtypes.root(rtype)
    )
    changed = change.modified.union(change.added)
    out: Managed = {}
    for other, own in managed.items():
        kept = own.fields.difference(changed).difference(change.removed)
        if not kept.empty():
            out[other] = replace(own, fields=kept)
    took = changed.difference(_STRIPPED)
    if not took.empty():
        previous = out.get(who)
        fields = took if previous is None else took.union(previous.fields)
        out[who] = Ownership(fields, who.api_version, now)
    return _capped(out)


def _capped(managed: Managed) -> Managed:
    """capmanagers.go: past 10 Update entries, the oldest merge into one ``ancient-changes`` entry
    per API version."""
    updaters = [who for who in managed if who.operation == UPDATE]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return managed
    updaters.sort(key=lambda who: (managed[who].time or "", who.identifier()))
    out = dict(managed)
    first: dict[str, ManagerId] = {}
    count = len(updaters)
    for who in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        own = out[who]
        bucket = ManagerId(ANCIENT_CHANGES, UPDATE, own.api_version)
        if own.api_version not in first:
            first[own.api_version] = who
            continue
        if bucket not in out:
            out[bucket] = out.pop(first[own.api_version])
        out[bucket] = Ownership(own.fields.union(out[bucket].fields), own.api_version, own.time)
        del out[who]
        count -= 1
    return out


# -- apply ----------------------------------------------------------------------------------


def _gvk(rtype: ResourceType, obj: JsonObj) -> str:
    """objectGVKNN: ``default/x; /v1, Kind=ConfigMap``."""
    meta = obj.get("metadata")
    named = meta if isinstance(meta, dict) else {}
    where = f"{named.get('namespace', '')}/{named.get('name', '')}"
    return f"{where}; {rtype.group}/{rtype.version}, Kind={rtype.kind}"


def _internal(message: str) -> ApiError:
    """A plain error of the field manager: ErrorToAPIStatus makes it a 500 without a reason."""
    return ApiError(500, "", message)


def _check_config(config: JsonObj, rtype: ResourceType) -> None:
    """structuredmerge.go Apply: the configuration's version must be the endpoint's, and it may
    not carry managedFields (400 both)."""
    version = config.get("apiVersion")
    if version != rtype.api_version:
        shown = version if isinstance(version, str) else ""
        raise bad_request(
            "Incorrect version specified in apply patch. Specified patch version: "
            f"{shown}, expected: {rtype.api_version}"
        )
    meta = config.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")


def apply_patch(
    live: JsonObj | None,
    config: JsonObj,
    rtype: ResourceType,
    *,
    manager: str,
    force: bool,
    now: str,
    subresource: str | None = None,
) -> JsonObj:
    """The object after ``manager`` applies ``config`` to ``live`` (None: apply-create), with its
    managedFields. ApiError: 400 for a bad configuration, 409 for conflicts, 500 for one that does
    not fit the kind's schema (as ObjectToTyped refuses it)."""
    _check_config(config, rtype)
    kind = fieldtypes.root(rtype)
    try:
        fields = structure.field_set(_view(config, rtype, subresource), kind)
    except TypedError as exc:
        message = f"failed to create typed patch object ({_gvk(rtype, config)}): {exc}"
        raise _internal(message) from exc
    base = live if live is not None else zero_object(rtype)
    try:
        managed = decode_managed((base.get("metadata") or {}).get("managedFields"))
    except (ValueError, FieldsError) as exc:
        raise _internal(f"failed to decode managed fields: {exc}") from exc
    if not managed:  # skipnonapplied.go: everything there so far was set before the first apply
        first = ManagerId(BEFORE_FIRST_APPLY, UPDATE, rtype.api_version)
        managed = _updated(zero_object(rtype), base, {}, first, now, rtype, subresource)
    try:
        merged = structure.merge(base, config, kind)
    except TypedError as exc:
        raise _internal(f"failed to merge config: {exc}") from exc
    who = ManagerId(manager, APPLY, "", subresource or "")
    last = managed.get(who)
    managed[who] = Ownership(fields, rtype.api_version, last.time if last else None)
    merged = _pruned(merged, managed, last, kind)
    change = structure.compare(
        _view(base, rtype, subresource), _view(merged, rtype, subresource), kind
    )
    changed = change.modified.union(change.added)
    conflicts: dict[ManagerId, FieldSet] = {}
    out: Managed = {}
    for other, own in managed.items():
        if other == who:
            continue
        taken = own.fields.intersection(changed)
        if not taken.empty():
            conflicts[other] = taken
        kept = own.fields.difference(taken).difference(change.removed)
        if not kept.empty():
            out[other] = replace(own, fields=kept)
    if conflicts and not force:
        raise conflict_error(conflicts)
    mine = fields.difference(_STRIPPED)
    if not mine.empty():
        out[who] = replace(managed[who], fields=mine)
        if merged != base:  # managedFieldsUpdater: a no-op apply keeps the old time
            out[who] = replace(out[who], time=now)
    return _with_managed(merged, out)


def _pruned(merged: JsonObj, managed: Managed, last: Ownership | None, kind: Any) -> JsonObj:
    """Updater.prune: what the manager applied last time, does not apply now, and nobody else
    owns goes (struct fields count as owned when something below them is)."""
    if last is None or last.fields.empty():
        return merged
    owned = FieldSet()
    for own in managed.values():
        owned = owned.union(own.fields)
    gone = structure.with_named_fields(last.fields, kind).difference(
        structure.with_named_fields(owned, kind)
    )
    if gone.empty():
        return merged
    pruned = structure.remove(merged, gone, kind)
    return {} if pruned is MISSING else dict(pruned)
