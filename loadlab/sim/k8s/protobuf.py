"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) to and from JSON dicts.

kubectl 1.32 and every client-go typed clientset send protobuf bodies and do not fall back to JSON
on 415, so the sim has to read them. One generic encoder and decoder walk ``proto_tables.MESSAGES``
(the field numbers of Kubernetes' generated.proto files); the few messages with a JSON form of
their own (Time, MicroTime, Quantity, IntOrString, FieldsV1, RawExtension) are coded here by hand.

A body is the 4-byte magic ``k8s\\0`` then a ``runtime.Unknown`` whose typeMeta names the kind and
whose ``raw`` holds the kind's message (apimachinery runtime/serializer/protobuf). A watch stream
is a series of length-prefixed frames, each a bare ``meta.v1.WatchEvent`` whose object is such a
whole body (``encode_watch_event``, ``frame``).

What the wire cannot carry, so a round trip loses it:
- a zero scalar ("", 0, false) and an empty list or map read back as absent: gogo-protobuf writes
  the zero fields of non-pointer Go fields, so the wire cannot tell them from unset, and the Go
  JSON of such fields omits them (omitempty) anyway;
- ``apiVersion`` and ``kind`` of list items and of embedded objects (only the envelope has them);
- sub-second parts of a ``Time`` (meta/v1 time_proto.go drops nanos on read, as JSON does);
- JSON keys no message declares (an unknown field has no number).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loadlab.sim.k8s.objects import GROUP_PACKAGES, JsonObj
from loadlab.sim.k8s.proto_tables import MESSAGES

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
# Kinds of meta.k8s.io/v1 that every group version also registers (client-go sends
# DeleteOptions under the resource's own group version).
_META_KINDS = frozenset({"Status", "DeleteOptions", "WatchEvent"})
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ProtobufError(ValueError):
    """A body that is no Kubernetes protobuf message the sim knows (the apiserver answers 400)."""


@dataclass(frozen=True)
class Field:
    """One field of a message, as its generated.proto line states it."""

    name: str
    number: int
    type: str
    """A scalar (string, bytes, bool, int32, int64) or a message name (``meta.ObjectMeta``)."""
    repeated: bool
    mapped: bool
    """A ``map<string, type>``: repeated entries with key=1, value=2."""
    inline: bool
    """A Go struct embedded inline: its fields sit in the parent's JSON object."""


@functools.cache
def _fields(message: str) -> tuple[Field, ...]:
    try:
        row = MESSAGES[message]
    except KeyError:
        raise ProtobufError(f"no protobuf message {message}") from None
    fields = []
    for part in row.split():
        name, _, rest = part.partition("=")
        number, _, typ = rest.partition(":")
        repeated, mapped = typ.startswith("["), typ.startswith("{")
        fields.append(
            Field(
                name=name.lstrip("+"),
                number=int(number),
                type=typ.strip("[]{}"),
                repeated=repeated,
                mapped=mapped,
                inline=name.startswith("+"),
            )
        )
    return tuple(fields)


@functools.cache
def _by_number(message: str) -> dict[int, Field]:
    return {f.number: f for f in _fields(message)}


def message_for(api_version: str, kind: str) -> str:
    """The message name of a kind (``v1``/``ConfigMap`` -> ``core.ConfigMap``)."""
    if kind in _META_KINDS:
        return f"meta.{kind}"
    group = api_version.rpartition("/")[0]
    name = f"{GROUP_PACKAGES.get(group, '?')}.{kind}"
    if name not in MESSAGES:
        raise ProtobufError(f"no protobuf message for kind {kind!r} of {api_version!r}")
    return name


def has_message(api_version: str, kind: str) -> bool:
    """Whether the sim can write ``kind`` as protobuf (every served kind can; checked up front so
    a watch never starts a stream it cannot write)."""
    try:
        message_for(api_version, kind)
    except ProtobufError:
        return False
    return True


# -- the wire ----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= _U64  # negative int32/int64 go out as ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def wire_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: an int for a varint, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError(f"field {number} runs past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ProtobufError(f"field {number} has unsupported wire type {wire}")
        if number == 0 or pos > len(data):
            raise ProtobufError("malformed protobuf message")
        yield number, wire, value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# -- encoding ----------------------------------------------------------------------------------


def encode_message(message: str, obj: JsonObj) -> bytes:
    """``obj`` (a JSON dict of ``message``) as protobuf; keys no field declares are left out."""
    out = bytearray()
    for field in _fields(message):
        if field.inline:
            out += _delimited(field.number, encode_message(field.type, obj))
            continue
        value = obj.get(field.name)
        if value is None:
            continue
        if field.mapped:
            if not isinstance(value, dict):
                raise ProtobufError(f"{field.name} is not a map")
            for key in sorted(value):  # gogo-protobuf writes map entries in key order
                entry = _delimited(1, str(key).encode()) + _encode_value(field.type, 2, value[key])
                out += _delimited(field.number, entry)
        elif field.repeated:
            if not isinstance(value, list):
                raise ProtobufError(f"{field.name} is not a list")
            for item in value:
                out += _encode_value(field.type, field.number, item)
        else:
            out += _encode_value(field.type, field.number, value)
    return bytes(out)


def _encode_value(typ: str, number: int, value: Any) -> bytes:  # noqa: C901 - one branch per type
    if typ == "string":
        if not isinstance(value, str):
            raise ProtobufError(f"field {number}: {value!r} is not a string")
        return _delimited(number, value.encode())
    if typ in ("int32", "int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtobufError(f"field {number}: {value!r} is not an integer")
        return _tag(number, _VARINT) + _varint(value)
    if typ == "bool":
        return _tag(number, _VARINT) + _varint(int(bool(value)))
    if typ == "bytes":
        return _delimited(number, base64.b64decode(value))
    if typ in ("meta.Time", "meta.MicroTime"):
        seconds, nanos = _parse_time(value)
        payload = _tag(1, _VARINT) + _varint(seconds)
        if nanos and typ == "meta.MicroTime":
            payload += _tag(2, _VARINT) + _varint(nanos)
        return _delimited(number, payload)
    if typ == "resource.Quantity":
        return _delimited(number, _delimited(1, str(value).encode()))
    if typ == "intstr.IntOrString":
        if isinstance(value, int):
            payload = _tag(1, _VARINT) + _varint(0) + _tag(2, _VARINT) + _varint(value)
        else:
            payload = _tag(1, _VARINT) + _varint(1) + _delimited(3, str(value).encode())
        return _delimited(number, payload)
    if typ in ("meta.FieldsV1", "runtime.RawExtension"):
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return _delimited(number, _delimited(1, raw))
    if not isinstance(value, dict):
        raise ProtobufError(f"field {number}: {value!r} is not an object")
    return _delimited(number, encode_message(typ, value))


def _parse_time(value: Any) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ProtobufError(f"{value!r} is not an RFC 3339 time")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtobufError(f"{value!r} is not an RFC 3339 time") from None
    delta = moment - _EPOCH
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000


# -- decoding ----------------------------------------------------------------------------------


def decode_message(message: str, data: bytes) -> JsonObj:
    """The JSON dict of a ``message``; unknown field numbers are skipped, as Go skips them."""
    fields = _by_number(message)
    obj: JsonObj = {}
    for number, _, raw in wire_fields(data):
        field = fields.get(number)
        if field is None:
            continue
        if field.inline:
            obj.update(decode_message(field.type, _need_bytes(field, raw)))
        elif field.mapped:
            key, value = "", None
            for entry_number, _, entry in wire_fields(_need_bytes(field, raw)):
                if entry_number == 1:
                    key = _need_bytes(field, entry).decode()
                elif entry_number == 2:
                    value = _decode_value(field, entry)
            obj.setdefault(field.name, {})[key] = "" if value is None else value
        elif field.repeated:
            value = _decode_value(field, raw)
            obj.setdefault(field.name, []).append("" if value is None else value)
        else:
            value = _decode_value(field, raw)
            if value is None or value == "" or value is False or value == 0:
                obj.pop(field.name, None)  # zero and unset look alike on the wire
            else:
                obj[field.name] = value
    return obj


def _need_bytes(field: Field, raw: int | bytes) -> bytes:
    if not isinstance(raw, bytes):
        raise ProtobufError(f"field {field.name} ({field.number}) is not length-delimited")
    return raw


def _decode_value(field: Field, raw: int | bytes) -> Any:  # noqa: C901 - one branch per type
    typ = field.type
    if typ in ("int32", "int64", "bool"):
        if not isinstance(raw, int):
            raise ProtobufError(f"field {field.name} ({field.number}) is not a varint")
        if typ == "bool":
            return raw != 0
        return _signed(raw, 32 if typ == "int32" else 64)
    data = _need_bytes(field, raw)
    if typ == "string":
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise ProtobufError(f"field {field.name} is not UTF-8") from None
    if typ == "bytes":
        return base64.b64encode(data).decode()
    parts = {n: v for n, _, v in wire_fields(data)}
    if typ in ("meta.Time", "meta.MicroTime"):
        seconds, nanos = parts.get(1, 0), parts.get(2, 0)
        if not isinstance(seconds, int) or not isinstance(nanos, int):
            raise ProtobufError(f"field {field.name} is not a Time")
        if not seconds and not nanos:
            return None  # a zero Time marshals to no bytes (meta/v1 time_proto.go)
        moment = _EPOCH + datetime.timedelta(seconds=_signed(seconds, 64))
        if typ == "meta.Time":
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        moment += datetime.timedelta(microseconds=_signed(nanos, 32) // 1000)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if typ == "resource.Quantity":
        return _text(parts.get(1, b""))
    if typ == "intstr.IntOrString":
        if parts.get(1, 0) == 1:
            return _text(parts.get(3, b""))
        number = parts.get(2, 0)
        return _signed(number, 32) if isinstance(number, int) else 0
    if typ in ("meta.FieldsV1", "runtime.RawExtension"):
        payload = parts.get(1, b"")
        if isinstance(payload, bytes) and payload.startswith(MAGIC):
            return decode_object(payload)  # a protobuf watch event carries a protobuf object
        try:
            return json.loads(_text(payload) or "null")
        except json.JSONDecodeError:
            raise ProtobufError(f"field {field.name} does not hold JSON") from None
    return decode_message(typ, data)


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("a string field is not length-delimited")
    return value.decode(errors="replace")


# -- the envelope ------------------------------------------------------------------------------


def encode_object(obj: JsonObj) -> bytes:
    """A whole body: magic, then runtime.Unknown{typeMeta, raw, contentEncoding, contentType}."""
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    raw = encode_message(message_for(api_version, kind), obj)
    type_meta = _delimited(1, api_version.encode()) + _delimited(2, kind.encode())
    # apimachinery writes the empty contentEncoding and contentType too (non-pointer fields).
    unknown = (
        _delimited(1, type_meta) + _delimited(2, raw) + _delimited(3, b"") + _delimited(4, b"")
    )
    return MAGIC + unknown


def decode_object(data: bytes) -> JsonObj:
    """The JSON dict of a whole body, ``apiVersion`` and ``kind`` taken from the envelope."""
    if not data.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\0")
    type_meta: JsonObj = {}
    raw, encoding = b"", b""
    for number, _, value in wire_fields(data[len(MAGIC) :]):
        if not isinstance(value, bytes):
            raise ProtobufError(f"runtime.Unknown field {number} is not length-delimited")
        if number == 1:
            type_meta = decode_message("runtime.TypeMeta", value)
        elif number == 2:
            raw = value
        elif number == 3:
            encoding = value
    if encoding:
        raise ProtobufError(f"unsupported contentEncoding {encoding.decode(errors='replace')!r}")
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    body = decode_message(message_for(api_version, kind), raw)
    return {"kind": kind, "apiVersion": api_version, **body}


# -- watch streams -----------------------------------------------------------------------------


def encode_watch_event(event_type: str, embedded: bytes) -> bytes:
    """A meta.v1.WatchEvent as a protobuf watch stream carries it: written by the RawSerializer
    (no magic, no runtime.Unknown: the stream's Content-Type says what it holds), its ``object`` a
    RawExtension whose raw is ``embedded``, the object as a whole body (``encode_object``), as
    apiserver handlers/watch.go's watchEncoder nests it (codec_factory.go: protobuf's
    StreamSerializer is the RawSerializer, its Serializer the enveloping one)."""
    return _delimited(1, event_type.encode()) + _delimited(2, _delimited(1, embedded))


def frame(message: bytes) -> bytes:
    """One frame of a length-delimited stream: a 4-byte big-endian length, then the message
    (apimachinery util/framer LengthDelimitedFrameWriter)."""
    return len(message).to_bytes(4, "big") + message


def decode_watch_event(message: bytes) -> JsonObj:
    """One frame's event as its JSON form, ``{"type": ..., "object": {...}}`` (what a client does
    with a frame: client-go rest/watch decoder, then the embedded decoder on object.raw)."""
    return decode_message("meta.WatchEvent", message)
