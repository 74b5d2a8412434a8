"""The sim API server refuses what kube-apiserver refuses, over real HTTP on loopback: bad bodies
are 400, invalid objects 422 with causes, bad query parameters 400; no client input is a 500, and
a refused write never breaks a later read."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import aiohttp
import pytest

from loadlab.sim.apiserver.app import SimApiServer
from loadlab.sim.k8s.objects import PODS as POD_TYPE
from tests.sim.conftest import RunWithApi
from tests.sim.helpers import MERGE

pytestmark = pytest.mark.realtime

PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSON = {"Content-Type": "application/json"}


def pod(name: str = "p1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
    }


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def send(
    s: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | io.BytesIO | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with s.request(method, url, data=body, headers=headers or JSON) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text.startswith("{") else text


NODE_STATUS = "/api/v1/nodes/node-0/status"
POD_0 = f"{PODS}/node-0-pod-0"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
REASONS = {400: "BadRequest", 422: "Invalid"}


def case(
    method: str,
    path: str,
    body: bytes,
    code: int,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    id: str,
) -> Any:
    """One refused write: the answer's code, and the field of a 422's first cause."""
    return pytest.param(method, path, body, headers or JSON, code, field, id=id)


def post(body: bytes, code: int, field: str | None = None, *, id: str) -> Any:
    return case("POST", PODS, body, code, field, id=id)


def spec_lease(**spec: Any) -> bytes:
    return raw({"metadata": {"name": "l"}, "spec": spec})


WRITES = [
    post(raw(pod(labels=[1])), 400, id="labels-list"),
    post(raw(pod(labels={"a": 1})), 400, id="label-number"),
    post(raw({**pod(), "metadata": "x"}), 400, id="metadata-string"),
    post(raw({**pod(), "metadata": {"name": 5}}), 400, id="name-number"),
    post(raw({**pod(), "spec": "x"}), 400, id="spec-string"),
    post(raw({**pod(), "spec": {"containers": {}}}), 400, id="containers-object"),
    post(raw({**pod(), "kind": "Service"}), 400, id="kind-mismatch"),
    post(raw({**pod(), "kind": 7}), 400, id="kind-number"),
    post(raw({**pod(), "apiVersion": "apps/v1"}), 400, id="api-version-mismatch"),
    post(b"{not json", 400, id="not-json"),
    post(b"[1, 2]", 400, id="array-body"),
    post(b'"pod"', 400, id="string-body"),
    post(b"", 400, id="empty-body"),
    post(b"[" * 10_000, 400, id="nested-10000"),
    post(b'{"a":' * 600 + b"1" + b"}" * 600, 400, id="nested-600-objects"),
    post(b'{"metadata": {"name": NaN}}', 400, id="nan"),
    post(b'{"x": 1e999, "metadata": {"name": "p"}}', 400, id="infinite-number"),
    post(b"\xff\xfe{}", 400, id="not-utf8"),
    post(raw(pod(namespace="other")), 400, id="namespace-mismatch"),
    post(raw(pod(labels={"bad key": "v"})), 422, "metadata.labels", id="label-key"),
    post(raw(pod(labels={"a/b/c": "v"})), 422, "metadata.labels", id="label-key-two-slashes"),
    post(raw(pod(labels={"A.com/a": "v"})), 422, "metadata.labels", id="label-prefix-upper"),
    post(raw(pod(labels={"a": "v" * 64})), 422, "metadata.labels", id="label-value-64"),
    post(raw(pod(labels={"a": "-v"})), 422, "metadata.labels", id="label-value-dash"),
    post(raw(pod("Bad_Name")), 422, "metadata.name", id="name-uppercase"),
    post(raw(pod("a" * 254)), 422, "metadata.name", id="name-254"),
    post(raw({**pod(), "metadata": {}}), 422, "metadata.name", id="name-missing"),
    post(
        raw({**pod(), "metadata": {"generateName": "Bad-"}}),
        422,
        "metadata.generateName",
        id="generate-name",
    ),
    post(
        raw(pod(annotations={"a": "x" * 262_144})),
        422,
        "metadata.annotations",
        id="annotations-too-big",
    ),
    post(raw(pod(annotations={"no way": "x"})), 422, "metadata.annotations", id="annotation-key"),
    case(
        "POST",
        "/api/v1/namespaces",
        raw({"metadata": {"name": "a.b"}}),
        422,
        "metadata.name",
        id="namespace-dots",
    ),
    case(
        "POST",
        "/api/v1/namespaces/default/services",
        raw({"metadata": {"name": "1svc"}}),
        422,
        "metadata.name",
        id="service-dns-1035",
    ),
    case("POST", LEASES, spec_lease(leaseDurationSeconds=1.5), 400, id="lease-duration-float"),
    case("POST", LEASES, spec_lease(renewTime="yesterday"), 400, id="lease-renew-time"),
    case(
        "PUT",
        POD_0,
        raw(pod("node-0-pod-0", labels={"a": "b c"})),
        422,
        "metadata.labels",
        id="put-label-value",
    ),
    case("PUT", POD_0, raw(pod("other")), 400, id="put-name-mismatch"),
    case("PUT", POD_0, raw(pod("node-0-pod-0", labels=[1])), 400, id="put-labels-list"),
    case(
        "PUT",
        NODE_STATUS,
        raw({"metadata": {"name": "node-0"}, "status": []}),
        400,
        id="put-status-list",
    ),
    case("PATCH", POD_0, raw({"metadata": {"labels": [1]}}), 422, "patch", MERGE, id="merge-list"),
    case("PATCH", POD_0, raw({"metadata": "x"}), 422, "patch", STRATEGIC, id="strategic-string"),
    case(
        "PATCH",
        POD_0,
        raw({"metadata": {"labels": {"a": "?"}}}),
        422,
        "metadata.labels",
        MERGE,
        id="merge-label-value",
    ),
    case("PATCH", POD_0, raw({"metadata": {"name": "x"}}), 400, None, MERGE, id="merge-rename"),
    case("PATCH", NODE_STATUS, raw({"status": "x"}), 422, "patch", MERGE, id="status-string"),
    case(
        "PATCH",
        NODE_STATUS,
        raw({"status": {"conditions": [{"status": 1}]}}),
        422,
        "patch",
        MERGE,
        id="status-condition-number",
    ),
    case("PATCH", POD_0, b"[" * 10_000, 400, None, MERGE, id="patch-nested-10000"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "code", "field"), WRITES)
def test_bad_write_is_refused_with_a_status_and_stores_nothing(
    run_with_api: RunWithApi,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    code: int,
    field: str | None,
) -> None:
    async def check(api: SimApiServer) -> None:
        rv_before = api.store.resource_version
        async with aiohttp.ClientSession() as s:
            got, status = await send(s, method, api.url + path, body, headers)
        assert (got, status["kind"], status["reason"], status["code"]) == (
            code,
            "Status",
            REASONS[code],
            code,
        )
        if field is not None:
            assert status["details"]["causes"][0]["field"] == field
        assert api.store.resource_version == rv_before

    run_with_api(check)


def test_invalid_label_key_is_a_422_shaped_as_kube_apiserver_shapes_it(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, status = await send(s, "POST", api.url + PODS, raw(pod(labels={"bad key": "v"})))
        detail = (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
        assert code == 422
        assert status == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'Pod "p1" is invalid: metadata.labels: Invalid value: "bad key": {detail}',
            "reason": "Invalid",
            "code": 422,
            "details": {
                "name": "p1",
                "kind": "Pod",
                "causes": [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f'Invalid value: "bad key": {detail}',
                        "field": "metadata.labels",
                    }
                ],
            },
        }

    run_with_api(check)


def test_labels_of_the_wrong_type_are_a_400_worded_as_the_go_decoder_words_it(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            code, status = await send(s, "POST", api.url + PODS, raw(pod(labels=[1])))
        assert (code, status["message"]) == (
            400,
            'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal array into '
            "Go struct field ObjectMeta.metadata.labels of type map[string]string",
        )

    run_with_api(check)


def test_several_errors_are_one_cause_each_and_an_aggregated_message(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        body = raw(pod("Bad", labels={"a": "-"}))
        async with aiohttp.ClientSession() as s:
            code, status = await send(s, "POST", api.url + PODS, body)
        assert code == 422
        assert [c["field"] for c in status["details"]["causes"]] == [
            "metadata.name",
            "metadata.labels",
        ]
        assert status["message"].startswith('Pod "Bad" is invalid: [metadata.name: Invalid value')

    run_with_api(check)


def test_label_selected_list_still_works_after_refused_bad_writes(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        url = api.url + "/api/v1/pods?labelSelector=app%3Dsvc-0"
        async with aiohttp.ClientSession() as s:
            for bad in (pod("bad1", labels=[1]), pod("bad2", labels={"app": ["svc-0"]})):
                code, _ = await send(s, "POST", api.url + PODS, raw(bad))
                assert code == 400
            patch = raw({"metadata": {"labels": {"app": {"x": 1}}}})
            code, _ = await send(s, "PATCH", f"{api.url}{PODS}/node-0-pod-0", patch, MERGE)
            assert code == 422
            code, lst = await send(s, "GET", url)
            assert (code, len(lst["items"])) == (200, 4)
            code, lst = await send(s, "GET", api.url + "/api/v1/pods?labelSelector=app")
            assert (code, len(lst["items"])) == (200, 15)

    run_with_api(check)


def test_label_selector_tolerates_odd_labels_already_in_the_store(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        # The store takes what it is given (seeding goes straight to it, past every check).
        odd: list[Any] = [{"app": ["x"]}, [1], None, "x"]
        for i, labels in enumerate(odd):
            meta = {"name": f"odd-{i}", "namespace": "default", "labels": labels}
            api.store.create(POD_TYPE, {"metadata": meta})
        async with aiohttp.ClientSession() as s:
            url = api.url + "/api/v1/pods?labelSelector="
            code, lst = await send(s, "GET", url + "app%3Dsvc-0")
            assert (code, len(lst["items"])) == (200, 4)
            code, lst = await send(s, "GET", url + "app%20notin%20(x)")
            assert (code, len(lst["items"])) == (200, 15 + len(odd))

    run_with_api(check)


def test_valid_writes_are_accepted_with_nulls_read_as_go_zero_values(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s:
            body = raw({**pod(labels={"a": None, "example.com/b": "B_1.x"}), "status": None})
            code, created = await send(s, "POST", api.url + PODS, body)
            assert code == 201
            assert created["metadata"]["labels"] == {"a": "", "example.com/b": "B_1.x"}
            # A created pod's status is the registry's, whatever the client sent (as a real
            # server's PrepareForCreate resets it).
            assert created["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
            body = raw({"metadata": {"generateName": "gen-"}})
            code, generated = await send(s, "POST", api.url + CONFIGMAPS, body)
            assert (code, generated["metadata"]["name"][:4]) == (201, "gen-")
            patch = raw({"metadata": {"labels": {"a": None, "c": "d"}}})
            code, patched = await send(s, "PATCH", f"{api.url}{PODS}/p1", patch, MERGE)
            assert code == 200
            assert patched["metadata"]["labels"] == {"example.com/b": "B_1.x", "c": "d"}

    run_with_api(check)


def test_lone_surrogate_is_stored_as_replacement_character_and_reads_back(
    run_with_api: RunWithApi,
) -> None:
    async def check(api: SimApiServer) -> None:
        body = b'{"metadata": {"name": "s1", "annotations": {"note": "a\\ud800b"}}}'
        async with aiohttp.ClientSession() as s:
            code, created = await send(s, "POST", api.url + CONFIGMAPS, body)
            assert (code, created["metadata"]["annotations"]) == (201, {"note": "a\ufffdb"})
            code, got = await send(s, "GET", f"{api.url}{CONFIGMAPS}/s1")
            assert (code, got["metadata"]["annotations"]) == (200, {"note": "a\ufffdb"})

    run_with_api(check)


def test_body_over_the_size_limit_is_a_413_status(run_with_api: RunWithApi) -> None:
    async def check(api: SimApiServer) -> None:
        # aiohttp's client_max_size, 1 MiB, is the sim's limit.
        body = io.BytesIO(raw(pod(annotations={"a": "x" * (2 * 1024 * 1024)})))
        async with aiohttp.ClientSession() as s:
            code, status = await send(s, "POST", api.url + PODS, body)
        assert (code, status["reason"]) == (413, "RequestEntityTooLarge")

    run_with_api(check)


def continue_param(data: Any) -> str:
    return "/api/v1/pods?continue=" + base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


QUERIES = [
    pytest.param("/api/v1/pods?limit=abc", 400, id="limit-word"),
    pytest.param("/api/v1/pods?limit=1.5", 400, id="limit-float"),
    pytest.param("/api/v1/pods?limit=99999999999999999999", 400, id="limit-over-int64"),
    pytest.param("/api/v1/pods?limit=-1", 200, id="limit-negative-ignored"),
    pytest.param("/api/v1/pods?timeoutSeconds=abc", 400, id="list-timeout-word"),
    pytest.param("/api/v1/pods?resourceVersion=abc", 400, id="list-rv-word"),
    pytest.param("/api/v1/pods?resourceVersion=-5", 400, id="list-rv-negative"),
    pytest.param(
        "/api/v1/pods?resourceVersion=99999999999999999999", 400, id="list-rv-over-uint64"
    ),
    pytest.param("/api/v1/pods?resourceVersion=0", 200, id="list-rv-zero"),
    pytest.param("/api/v1/pods?resourceVersionMatch=Bogus&resourceVersion=1", 422, id="rvm-bogus"),
    pytest.param("/api/v1/pods?resourceVersionMatch=Exact", 422, id="rvm-without-rv"),
    pytest.param("/api/v1/pods?labelSelector=a%20in%20", 400, id="label-selector-open-set"),
    pytest.param("/api/v1/pods?labelSelector=%3D%3Dx", 400, id="label-selector-no-key"),
    pytest.param("/api/v1/pods?labelSelector=a%3Db%20c", 400, id="label-selector-space"),
    pytest.param("/api/v1/pods?labelSelector=a%20in%20(b", 400, id="label-selector-unclosed"),
    pytest.param("/api/v1/pods?fieldSelector=nonsense", 400, id="field-selector-no-operator"),
    pytest.param("/api/v1/pods?continue=garbage!!", 400, id="continue-garbage"),
    pytest.param(continue_param([1, 2]), 400, id="continue-list"),
    pytest.param(continue_param({"rv": 1e308 * 10, "start": ["a", "b"]}), 400, id="continue-inf"),
    pytest.param(continue_param({"rv": "x", "start": "ab"}), 400, id="continue-rv-word"),
    pytest.param(
        "/api/v1/pods?continue=" + base64.urlsafe_b64encode(b"[" * 5000).decode(),
        400,
        id="continue-nested",
    ),
    pytest.param(
        continue_param({"rv": 1, "start": ["a", "b"]}) + "&resourceVersion=5",
        400,
        id="continue-with-rv",
    ),
    pytest.param(f"{POD_0}?resourceVersion=abc", 400, id="get-rv-word"),
    pytest.param("/api/v1/pods?watch=1&timeoutSeconds=abc", 400, id="watch-timeout-word"),
    pytest.param("/api/v1/pods?watch=1&timeoutSeconds=nan", 400, id="watch-timeout-nan"),
    pytest.param("/api/v1/pods?watch=1&timeoutSeconds=1e999", 400, id="watch-timeout-huge"),
    pytest.param("/api/v1/pods?watch=1&timeoutSeconds=-1", 200, id="watch-timeout-negative"),
    pytest.param("/api/v1/pods?watch=1&resourceVersion=abc", 400, id="watch-rv-word"),
    pytest.param("/api/v1/pods?watch=1&labelSelector=!", 400, id="watch-label-selector"),
    pytest.param("/api/v1/pods?watch=1&fieldSelector=x", 400, id="watch-field-selector"),
    pytest.param("/api/v1/pods?watch=1&resourceVersionMatch=Exact", 422, id="watch-rvm"),
]


@pytest.mark.parametrize(("path", "code"), QUERIES)
def test_bad_query_parameters_are_a_status_never_a_500(
    run_with_api: RunWithApi, path: str, code: int
) -> None:
    async def check(api: SimApiServer) -> None:
        async with aiohttp.ClientSession() as s, s.get(api.url + path) as resp:
            assert resp.status == code
            if code != 200:
                status = await resp.json()
                assert (status["kind"], status["code"]) == ("Status", code)

    run_with_api(check)
