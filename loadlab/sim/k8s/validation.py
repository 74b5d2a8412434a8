"""What the sim's API server refuses before anything reaches the store, as kube-apiserver does.

Three stages, in kube-apiserver's order (k8s.io/apiserver pkg/endpoints/handlers create.go,
update.go, patch.go):
- the body: not JSON, not a JSON object, or nested too deep is 400 BadRequest;
- decoding into the typed object: a field of the wrong JSON type (``metadata: "x"``,
  ``metadata.labels: [1]``) is 400 BadRequest with Go's decoder message, wrapped as
  ``transformDecodeError`` wraps it; a patch whose result does not decode is 422 on ``patch``;
- validation of values (names, label keys and values, annotations) is 422 Invalid with one
  ``details.causes[]`` entry per field error (apimachinery pkg/api/errors ``NewInvalid``).

What is faithful: the rules and messages of apimachinery pkg/util/validation/validation.go
(DNS-1123/1035 names, qualified names, label values) and pkg/api/validation/objectmeta.go
(metadata), and the shapes of the Status objects. Simplifications, on purpose: only the typed
fields the sim itself reads (metadata, and what the tables and cluster DNS read) are
type-checked; unknown fields pass, as with kube-apiserver's default ``fieldValidation=Warn``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadlab.sim.k8s.objects import NAMESPACES, SERVICES, JsonObj, ResourceType
from loadlab.sim.k8s.shapes import BodyError, json_kind, parse_body, shape_error

# apimachinery pkg/util/validation/validation.go
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX_LENGTH = 63
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
QUALIFIED_NAME_MAX_LENGTH = 63
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
LABEL_VALUE_MAX_LENGTH = 63
# apimachinery pkg/api/validation/objectmeta.go: totalAnnotationSizeLimitB = 256 * (1 << 10)
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * 1024
# k8s.io/apiserver pkg/storage/names/generate.go: randomLength = 5; validated as if generated.
_GENERATED_SUFFIX = "xxxxx"


class ApiError(Exception):
    """A request refused with a Kubernetes Status: ``code``, ``reason``, ``details``."""

    def __init__(
        self, code: int, reason: str, message: str, details: JsonObj | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.details = details


def bad_request(message: str) -> ApiError:
    """apimachinery pkg/api/errors NewBadRequest: 400 BadRequest."""
    return ApiError(400, "BadRequest", message)


_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
"""What Go's strconv.ParseBool accepts, as the query decoder uses it for a bool parameter."""


def parse_go_bool(raw: str, prefix: str = "") -> bool:
    """``raw`` as strconv.ParseBool reads it; otherwise a 400 with its message after
    ``prefix`` (the parameter, where the real server names it)."""
    value = _GO_BOOLS.get(raw)
    if value is None:
        raise bad_request(f'{prefix}strconv.ParseBool: parsing "{raw}": invalid syntax')
    return value


@dataclass(frozen=True)
class FieldError:
    """One field.Error of apimachinery pkg/util/validation/field/errors.go."""

    type: str
    """The cause type: FieldValueInvalid, FieldValueRequired, FieldValueForbidden..."""
    field: str
    """The field path: ``metadata.labels``."""
    body: str
    """ErrorBody(): ``Invalid value: "x": <detail>``."""

    def message(self) -> str:
        return f"{self.field}: {self.body}"


def go_quote(value: Any) -> str:
    """Go's %q for the values these messages quote (JSON string quoting is the same for them)."""
    return json.dumps(value, ensure_ascii=False)


def field_invalid(field: str, value: Any, detail: str) -> FieldError:
    shown = value if isinstance(value, (bool, int, float)) else go_quote(value)
    return FieldError("FieldValueInvalid", field, f"Invalid value: {shown}: {detail}")


def field_required(field: str, detail: str) -> FieldError:
    body = f"Required value: {detail}" if detail else "Required value"
    return FieldError("FieldValueRequired", field, body)


def field_forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {detail}")


def field_not_supported(field: str, value: str, supported: list[str]) -> FieldError:
    listed = ", ".join(go_quote(s) for s in supported)
    body = f"Unsupported value: {go_quote(value)}: supported values: {listed}"
    return FieldError("FieldValueNotSupported", field, body)


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """apimachinery pkg/api/errors NewInvalid: 422 Invalid, one cause per field error; the
    message aggregates them as util/errors does ("[a, b]" when there are several)."""
    messages = list(dict.fromkeys(e.message() for e in errors))
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details: JsonObj = {"name": name, "group": group, "kind": kind}
    details = {k: v for k, v in details.items() if v}  # omitempty, as Go encodes it
    details["causes"] = [{"reason": e.type, "message": e.body, "field": e.field} for e in errors]
    return ApiError(422, "Invalid", f"{qualified} {go_quote(name)} is invalid: {joined}", details)


# -- the body ------------------------------------------------------------------------------


def decode_body(raw: bytes) -> JsonObj:
    """The request body as a JSON object; 400 BadRequest when it is not one (or nests too deep)."""
    try:
        return parse_body(raw)
    except BodyError as exc:
        raise bad_request(str(exc)) from exc


# -- decoding into the typed object --------------------------------------------------------


def _summary(obj: JsonObj) -> str:
    """handlers/rest.go summarizeData(body, 30): the first 30 bytes of the body."""
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return data if len(data) <= 30 else data[:30] + " ..."


def decode_problem(rtype: ResourceType, obj: JsonObj) -> str | None:
    """Why ``obj`` would not decode as ``rtype`` (kube-apiserver's decoder), or None."""
    for key in ("apiVersion", "kind"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return (
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{json_kind(value)} into Go struct field .{key} of type string"
            )
    kind = obj.get("kind") or rtype.kind
    if kind != rtype.kind:
        return f'no kind "{kind}" is registered for the {rtype.plural} endpoint'
    return shape_error(rtype, obj)


def check_decodes(rtype: ResourceType, obj: JsonObj) -> None:
    """Create and update: a body that does not decode is 400, worded as transformDecodeError
    (k8s.io/apiserver pkg/endpoints/handlers/rest.go) words it."""
    problem = decode_problem(rtype, obj)
    if problem is None:
        api_version = obj.get("apiVersion") or rtype.api_version
        if api_version != rtype.api_version:
            # handlers/create.go: the decoded group/version must be the endpoint's.
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rtype.api_version})"
            )
        return
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if isinstance(kind, str | None) and isinstance(api_version, str | None):
        version = (api_version or rtype.api_version).rpartition("/")[2]
        raise bad_request(
            f'{kind or rtype.kind} in version "{version}" cannot be handled as a '
            f"{rtype.kind}: {problem}"
        )
    raise bad_request(
        f"the object provided is unrecognized (must be of type {rtype.kind}): {problem} "
        f"({_summary(obj)})"
    )


def check_patch_result(rtype: ResourceType, patched: JsonObj) -> None:
    """Patch: a result that does not decode is 422 on the field ``patch``, with an empty kind
    and name (handlers/patch.go applyPatchToCurrentObject)."""
    problem = decode_problem(rtype, patched)
    api_version = patched.get("apiVersion") or rtype.api_version
    if problem is None and api_version != rtype.api_version:
        problem = f'no kind "{rtype.kind}" is registered for version "{api_version}"'
    if problem is not None:
        shown = json.dumps(patched, separators=(",", ":"), ensure_ascii=False)
        raise invalid("", "", "", [field_invalid("patch", shown, problem)])


# -- values ---------------------------------------------------------------------------------


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.go RegexError."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _too_long(value: str, limit: int) -> bool:
    return len(value.encode()) > limit  # Go's len() counts bytes


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _too_long(value, DNS1123_SUBDOMAIN_MAX_LENGTH):
        errs.append(_max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value, re.ASCII):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if _too_long(value, DNS1123_LABEL_MAX_LENGTH):
        errs.append(_max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not re.fullmatch(_DNS1123_LABEL_FMT, value, re.ASCII):
        if re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value, re.ASCII):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if _too_long(value, DNS1123_LABEL_MAX_LENGTH):
        errs.append(_max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not re.fullmatch(_DNS1035_LABEL_FMT, value, re.ASCII):
        errs.append(_regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif _too_long(name, QUALIFIED_NAME_MAX_LENGTH):
        errs.append("name part " + _max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not re.fullmatch(_QNAME_FMT, name, re.ASCII):
        errs.append(
            "name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if _too_long(value, LABEL_VALUE_MAX_LENGTH):
        errs.append(_max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not re.fullmatch(_LABEL_VALUE_FMT, value, re.ASCII):
        errs.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345")
        )
    return errs


def _name_rule(rtype: ResourceType, name: str, prefix: bool) -> list[str]:
    """The ValidateNameFunc of each kind (kubernetes pkg/apis/core/validation/validation.go):
    namespaces are DNS-1123 labels, services DNS-1035 labels, the rest DNS-1123 subdomains. A
    generateName prefix may end in '-' (maskTrailingDash)."""
    if prefix and len(name) > 1 and name.endswith("-"):
        name = name[:-1] + "a"
    if rtype is NAMESPACES:
        return is_dns1123_label(name)
    if rtype is SERVICES:
        return is_dns1035_label(name)
    return is_dns1123_subdomain(name)


def _validate_meta(
    rtype: ResourceType, meta: Mapping[str, Any], creating: bool
) -> list[FieldError]:
    """objectmeta.go ValidateObjectMetaAccessor: names, namespace, labels, annotations."""
    errs: list[FieldError] = []
    generate = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate:
        errs += [
            field_invalid("metadata.generateName", generate, m)
            for m in _name_rule(rtype, generate, True)
        ]
    if not name and not (creating and generate):
        errs.append(field_required("metadata.name", "name or generateName is required"))
    elif name or not errs:
        # A generated name is checked as the store will make it: the prefix plus 5 characters.
        candidate = name or generate + _GENERATED_SUFFIX
        errs += [
            field_invalid("metadata.name", candidate, m)
            for m in _name_rule(rtype, candidate, False)
        ]
    namespace = meta.get("namespace") or ""
    if rtype.namespaced:
        if not namespace:
            errs.append(field_required("metadata.namespace", ""))
        else:
            errs += [
                field_invalid("metadata.namespace", namespace, m)
                for m in is_dns1123_label(namespace)
            ]
    labels = meta.get("labels") or {}
    for key, value in labels.items():
        errs += [field_invalid("metadata.labels", key, m) for m in is_qualified_name(key)]
        errs += [
            field_invalid("metadata.labels", value or "", m) for m in is_label_value(value or "")
        ]
    annotations = meta.get("annotations") or {}
    total = 0
    for key, value in annotations.items():
        errs += [
            field_invalid("metadata.annotations", key, m) for m in is_qualified_name(key.lower())
        ]
        total += len(key.encode()) + len((value or "").encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(
            FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes",
            )
        )
    return errs


def validate_object(rtype: ResourceType, obj: JsonObj, *, creating: bool) -> None:
    """422 Invalid when an object that decodes breaks a value rule (ValidateObjectMeta on
    create, ValidateObjectMetaUpdate on update and patch: the same rules for these fields)."""
    meta = obj.get("metadata") or {}
    errs = _validate_meta(rtype, meta, creating)
    if errs:
        shown = meta.get("name") or meta.get("generateName") or ""
        raise invalid(rtype.group, rtype.kind, shown, errs)
