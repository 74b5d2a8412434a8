"""The three patch types kube-apiserver takes, applied to the sim's JSON objects.

- ``application/merge-patch+json``: RFC 7386 (``merge_patch``).
- ``application/json-patch+json``: RFC 6902 (``json_patch``), with the errors of the library
  kube-apiserver uses (evanphx/json-patch): a failed operation is 422 Invalid "the server
  rejected our request due to an error in our request" with the library's message as the one
  cause (handlers/patch.go ``applyJSPatch``), a body that is not a list of operations is 400,
  more than 10,000 operations is 413.
- ``application/strategic-merge-patch+json``: in ``strategic.py``.

Stored objects are never mutated: every function returns new containers along changed paths.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.k8s.validation import ApiError, bad_request

# handlers/patch.go: maxJSONPatchOperations.
MAX_JSON_PATCH_OPERATIONS = 10_000
_REJECTED = "the server rejected our request due to an error in our request"


def unprocessable(message: str) -> ApiError:
    """apimachinery NewGenericServerResponse(422, ...): reason Invalid, the message as a cause."""
    return ApiError(422, "Invalid", _REJECTED, {"causes": [{"message": message}]})


# -- RFC 7386 ----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, returning new dicts along patched paths only.

    Keys starting with ``$`` are dropped: no Go field has such a name, so kube-apiserver's
    decoder drops them from the result too (unknown fields, ``fieldValidation=Warn``)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# -- RFC 6902 ----------------------------------------------------------------------------


def json_patch(doc: JsonObj, raw: bytes) -> JsonObj:
    """Apply the JSON patch ``raw`` (the request body) to a copy of ``doc``."""
    try:
        ops = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"invalid character in JSON patch: {exc}") from exc
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        shown = "object" if isinstance(ops, dict) else type(ops).__name__
        raise bad_request(f"json: cannot unmarshal {shown} into Go value of type jsonpatch.Patch")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    result: Any = copy.deepcopy(doc)
    for op in ops:
        try:
            result = _apply_op(result, op)
        except _OpError as exc:
            raise unprocessable(str(exc)) from exc
    if not isinstance(result, dict):
        raise unprocessable("the patched document is not a JSON object")
    out: JsonObj = result
    return out


class _OpError(Exception):
    """One operation did not apply; the message is evanphx/json-patch's."""


def _pointer(op: JsonObj, field: str) -> list[str]:
    path = op.get(field)
    if not isinstance(path, str):
        what = "path" if field == "path" else "from"
        raise _OpError(f"operation missing {what} field: missing value")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _OpError(f'JSON pointer must start with "/": {path}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise _OpError(f"value was not a proper array index: '{token}'")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not adding):
        raise _OpError(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx


def _child(node: Any, token: str) -> Any:
    """One step of a JSON pointer: a key of an object or an index of an array, else KeyError."""
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise KeyError(token)


def _parent(doc: Any, parts: list[str], kind: str, path: str) -> Any:
    node = doc
    for token in parts[:-1]:
        try:
            node = _child(node, token)
        except KeyError:
            node = None
        if not isinstance(node, dict | list):
            raise _OpError(f'{kind} operation does not apply: doc is missing path: "{path}"')
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    node = doc
    for token in parts:
        node = _child(node, token)
    return node


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts, "add", path)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    else:
        parent.insert(_index(parent, parts[-1], adding=True), value)
    return doc


def _remove(doc: Any, parts: list[str], kind: str, path: str) -> Any:
    parent = _parent(doc, parts, kind, path) if parts else None
    if isinstance(parent, dict):
        if parts[-1] not in parent:
            raise _OpError(f"Unable to remove nonexistent key: {parts[-1]}: missing value")
        return parent.pop(parts[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, parts[-1], adding=False))
    raise _OpError(f'{kind} operation does not apply: doc is missing path: "{path}"')


def _op_add(doc: Any, op: JsonObj, path: str) -> Any:
    return _add(doc, _pointer(op, "path"), copy.deepcopy(op["value"]), path)


def _op_remove(doc: Any, op: JsonObj, path: str) -> Any:
    _remove(doc, _pointer(op, "path"), "remove", path)
    return doc


def _op_replace(doc: Any, op: JsonObj, path: str) -> Any:
    parts = _pointer(op, "path")
    try:
        _get(doc, parts)
    except KeyError:
        raise _OpError(
            f"replace operation does not apply: doc is missing key: {path}: missing value"
        ) from None
    if not parts:
        return copy.deepcopy(op["value"])
    _remove(doc, parts, "replace", path)
    return _add(doc, parts, copy.deepcopy(op["value"]), path)


def _op_move_or_copy(doc: Any, op: JsonObj, path: str) -> Any:
    kind = op["op"]
    src = _pointer(op, "from")
    try:
        value = _get(doc, src)
    except KeyError:
        raise _OpError(
            f"{kind} operation does not apply: doc is missing from path: "
            f"{op.get('from')}: missing value"
        ) from None
    if kind == "move":
        _remove(doc, src, "move", str(op.get("from")))
    else:
        value = copy.deepcopy(value)
    return _add(doc, _pointer(op, "path"), value, path)


def _op_test(doc: Any, op: JsonObj, path: str) -> Any:
    try:
        found = _get(doc, _pointer(op, "path"))
    except KeyError:
        found = _MISSING
    if found is _MISSING or not _json_equal(found, op["value"]):
        raise _OpError(f"testing value {path} failed: test failed")
    return doc


_OPS = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move_or_copy,
    "copy": _op_move_or_copy,
    "test": _op_test,
}


def _apply_op(doc: Any, op: JsonObj) -> Any:
    kind = op.get("op")
    apply = _OPS.get(kind) if isinstance(kind, str) else None
    if apply is None:
        raise _OpError(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")
    if kind in ("add", "replace", "test") and "value" not in op:
        raise _OpError("operation, missing value field: missing value")
    return apply(doc, op, str(op.get("path")))


_MISSING = object()


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ==, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
