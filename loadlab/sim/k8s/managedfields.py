"""``metadata.managedFields`` entries, apply conflicts, and the write options that name a manager.

An entry says which fields one manager owns: ``manager``, ``operation`` (Apply or Update),
``apiVersion``, ``time``, ``fieldsType: FieldsV1``, ``fieldsV1`` (a ``fieldpath.FieldSet``),
``subresource``. Sources: k8s.io/apimachinery pkg/util/managedfields/internal (managedfields.go
for the format, identity and order, conflict.go for the 409), pkg/apis/meta/v1/validation (the
``fieldManager`` and ``force`` options) and k8s.io/apiserver handlers/create.go (a manager named
after the User-Agent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from loadlab.sim.k8s import fieldpath
from loadlab.sim.k8s.fieldpath import FieldSet
from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.k8s.validation import (
    ApiError,
    FieldError,
    field_forbidden,
    field_invalid,
    field_required,
    invalid,
    parse_go_bool,
)

APPLY: Final = "Apply"
UPDATE: Final = "Update"
FIELDS_V1: Final = "FieldsV1"
FIELD_MANAGER_MAX_LENGTH: Final = 128  # meta/v1/validation FieldManagerMaxLength


@dataclass(frozen=True)
class ManagerId:
    """What makes two managedFields entries the same manager (BuildManagerIdentifier)."""

    manager: str
    operation: str
    api_version: str = ""
    """Part of an Update manager's identity only."""
    subresource: str = ""

    def identifier(self) -> str:
        entry = {"manager": self.manager, "operation": self.operation}
        entry |= {"apiVersion": self.api_version, "subresource": self.subresource}
        return json.dumps({k: v for k, v in entry.items() if v}, separators=(",", ":"))

    def printed(self) -> str:
        """conflict.go printManager: ``"kubectl-edit" using v1``, ``"kubectl"``."""
        shown = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            shown += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == UPDATE:
            shown += f" using {self.api_version}"
        return shown


@dataclass(frozen=True)
class Ownership:
    fields: FieldSet
    api_version: str
    time: str | None
    """RFC 3339, seconds; None for an apply that changed nothing and had no entry before."""


Managed = dict[ManagerId, Ownership]


def decode_managed(entries: Any) -> Managed:
    """``metadata.managedFields`` as ownership; ValueError as DecodeManagedFields refuses."""
    managed: Managed = {}
    for i, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            raise ValueError(f"managed fields entry {i} is not an object")
        operation = entry.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = entry.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            raise ValueError("apiVersion must not be empty")
        if entry.get("fieldsType") != FIELDS_V1:
            raise ValueError(f"invalid fieldsType in managed fields entry {i}")
        fields = FieldSet.decode(entry.get("fieldsV1") or {})
        who = ManagerId(
            str(entry.get("manager") or ""),
            operation,
            api_version if operation == UPDATE else "",
            str(entry.get("subresource") or ""),
        )
        time = entry.get("time")
        managed[who] = Ownership(fields, api_version, time if isinstance(time, str) else None)
    return managed


def encode_managed(managed: Managed) -> list[JsonObj]:
    """The entries, in sortEncodedManagedFields's order (Apply first, then oldest first)."""

    def order(item: tuple[ManagerId, Ownership]) -> tuple[str, str, str, str, str]:
        who, own = item
        return (who.operation, own.time or "", who.manager, own.api_version, who.subresource)

    out: list[JsonObj] = []
    for who, own in sorted(managed.items(), key=order):
        entry: JsonObj = {"manager": who.manager, "operation": who.operation}
        entry["apiVersion"] = own.api_version
        if own.time is not None:
            entry["time"] = own.time
        entry |= {"fieldsType": FIELDS_V1, "fieldsV1": own.fields.encode()}
        if who.subresource:
            entry["subresource"] = who.subresource
        out.append({k: v for k, v in entry.items() if v != ""})
    return out


# -- the write options ----------------------------------------------------------------------


def prefix_from_user_agent(user_agent: str) -> str:
    """handlers/create.go prefixFromUserAgent: the User-Agent up to its first ``/``, printable
    characters only, at most 128 bytes (``kubectl/v1.32.0 (linux/amd64) ...`` -> ``kubectl``)."""
    out = ""
    for ch in user_agent.split("/")[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out


def field_manager(
    query: Mapping[str, str], user_agent: str | None, *, options_kind: str, apply: bool
) -> str:
    """The manager a write records, from ``?fieldManager=`` or else the User-Agent; 422 as
    ValidatePatchOptions/ValidateCreateOptions/ValidateUpdateOptions refuse the options."""
    given = query.get("fieldManager", "")
    errors: list[FieldError] = []
    if options_kind == "PatchOptions" and not apply and "force" in query:
        errors.append(field_forbidden("force", "may not be specified for non-apply patch"))
    if apply and not given:
        errors.append(field_required("fieldManager", "is required for apply patch"))
    if len(given.encode()) > FIELD_MANAGER_MAX_LENGTH:
        body = f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"
        errors.append(FieldError("FieldValueTooLong", "fieldManager", body))
    offset = 0
    for ch in given:
        if not ch.isprintable():
            detail = f"invalid character U+{ord(ch):04X} (at position {offset})"
            errors.append(field_invalid("fieldManager", given, detail))
        offset += len(ch.encode())
    if errors:
        raise invalid("meta.k8s.io", options_kind, "", errors)
    return given or prefix_from_user_agent(user_agent or "")


def force_option(query: Mapping[str, str]) -> bool:
    """``?force=``, parsed as Go's strconv.ParseBool (400 otherwise)."""
    return parse_go_bool(query.get("force", "false"))


def conflict_error(conflicts: Mapping[ManagerId, FieldSet]) -> ApiError:
    """errors.NewApplyConflict with conflict.go's message: one cause per conflicting field."""
    found = [
        (who, path)
        for who in sorted(conflicts, key=ManagerId.identifier)
        for path in conflicts[who].paths()
    ]
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who.printed()}",
            "field": fieldpath.path_string(path),
        }
        for who, path in found
    ]
    if len(found) == 1:
        who, path = found[0]
        message = f"Apply failed with 1 conflict: conflict with {who.printed()}: " + (
            fieldpath.path_string(path)
        )
    else:
        lines: list[str] = []
        for who in sorted(conflicts, key=ManagerId.identifier):
            lines.append(f"conflicts with {who.printed()}:")
            lines.extend(f"- {fieldpath.path_string(p)}" for p in conflicts[who].paths())
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})
