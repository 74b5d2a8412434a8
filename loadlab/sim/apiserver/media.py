"""Content negotiation of the sim API server: JSON, YAML and Kubernetes protobuf bodies.

Requests are read by their Content-Type (415 for one the sim cannot read); answers are written in
the first media type of the client's Accept the sim can write, by q then order (406 when none), as
apimachinery's negotiation picks them. Handlers build JSON; ``rendered`` re-encodes it at the end.
A watch streams JSON or protobuf (``negotiate_watch``; the framing is ``watchstream``'s).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from loadlab.sim.k8s import protobuf
from loadlab.sim.k8s.objects import JsonObj
from loadlab.sim.k8s.validation import ApiError, bad_request, decode_body

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = protobuf.MEDIA_TYPE
SERVED = (JSON, YAML, PROTOBUF)
STREAMED = (JSON, PROTOBUF)
"""What a watch can stream: the media types with a stream serializer (apimachinery
codec_factory.go; YAML has none)."""
# The bodies of a PATCH, one per patch type (k8s.io/apimachinery pkg/types/patch.go).
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
MEDIA_KEY = web.RequestKey("loadlab.media", str)
"""Where a request keeps the media type its answer takes (aiohttp request state)."""
_WILDCARDS = {"*/*": JSON, "application/*": JSON}
# A protobuf body that is no valid message (bad base64 or UTF-8 included) is 400.
_PROTOBUF_ERRORS = (protobuf.ProtobufError, UnicodeDecodeError, ValueError)


class _StringTimes(yaml.SafeLoader):
    """YAML without the timestamp type: sigs.k8s.io/yaml hands times on as strings."""


_StringTimes.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def negotiate(accept: str | None, served: tuple[str, ...] = SERVED) -> str | None:
    """The media type to answer in, or None (406). No Accept means JSON."""
    if not accept or not accept.strip():
        return JSON
    ranked: list[tuple[float, int, str]] = []
    for index, entry in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in entry.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        answer = _WILDCARDS.get(media, media)
        if quality > 0 and answer in served:
            ranked.append((-quality, index, answer))
    return min(ranked)[2] if ranked else None


def negotiate_watch(accept: str | None, *, table: bool = False) -> str:
    """The media type a watch streams in, JSON or protobuf; else ApiError 406. Decided as
    ListResource then serveWatchHandler decide (apiserver handlers/get.go, watch.go): first as
    for any read (406 listing the three types when Accept names none of them), then the choice
    must have a stream serializer, which YAML lacks (406 listing the stream types). A Table watch
    is JSON: kubectl asks for its Tables in JSON, and the sim writes no Table message."""
    media = negotiate(accept, (JSON,) if table else SERVED)
    if media is None:
        raise not_acceptable()
    if media not in STREAMED:
        raise not_acceptable(tuple(f"{m};stream=watch" for m in STREAMED))
    return media


def not_acceptable(accepted: tuple[str, ...] = SERVED) -> ApiError:
    return ApiError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: " + ", ".join(accepted),
    )


def read_object(raw: bytes, content_type: str | None) -> JsonObj:
    """A request body as a JSON dict, read by its Content-Type (none means JSON)."""
    media = (content_type or JSON).split(";")[0].strip().lower()
    if media in (JSON, "*/*", ""):
        return decode_body(raw)
    if media == PROTOBUF:
        try:
            return protobuf.decode_object(raw)
        except _PROTOBUF_ERRORS as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from exc
    if media in (YAML, "application/x-yaml", "text/yaml"):
        try:
            loaded: Any = yaml.load(raw, Loader=_StringTimes)
        except yaml.YAMLError as exc:
            raise bad_request(f"error converting YAML to JSON: {exc}") from exc
        return decode_body(json.dumps(loaded).encode())
    raise ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(SERVED),
    )


def render(obj: JsonObj, media: str) -> bytes:
    if media == PROTOBUF:
        return protobuf.encode_object(obj)
    if media == YAML:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def rendered(response: web.StreamResponse, media: str) -> web.StreamResponse:
    """A JSON answer re-encoded as ``media`` (other answers, such as Tables, as they are)."""
    if media == JSON or not isinstance(response, web.Response):
        return response
    if response.content_type != JSON or not isinstance(response.body, bytes):
        return response
    obj = json.loads(response.body)
    if obj.get("kind") == "Table" and media != YAML:
        return response  # apimachinery serves Tables as JSON or YAML only
    try:
        body = render(obj, media)
    except protobuf.ProtobufError:
        return response  # a kind with no message: JSON, which every client also takes
    response.body = body
    response.content_type = media
    return response


def read_apply_body(raw: bytes) -> JsonObj:
    """The body of a server-side apply: YAML (JSON being YAML) holding one object, read as
    handlers/patch.go's applyPatcher reads it (sigs.k8s.io/yaml); anything else is 400."""
    if raw.lstrip()[:1] == b"{":
        return decode_body(raw)
    try:
        loaded: Any = yaml.load(raw, Loader=_StringTimes) if raw.strip() else {}
    except yaml.YAMLError as exc:
        raise bad_request(f"error decoding YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        shown = "array" if isinstance(loaded, list) else "string" if loaded else "null"
        raise bad_request(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot "
            f"unmarshal {shown} into Go value of type map[string]interface {{}}"
        )
    return decode_body(json.dumps(loaded).encode())
