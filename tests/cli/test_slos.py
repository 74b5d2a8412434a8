"""SLO defaults and overrides: which class a call is in, and the bound each operation gets."""

from __future__ import annotations

import pytest

from loadlab.errors import ProfileError
from loadlab.profile import validate_profile
from loadlab.scenario import api_op_bounds
from loadlab.slos import SloSection, api_call_shape, dns_op_bound, http_op_bound


@pytest.mark.parametrize(
    ("method", "path", "shape"),
    [
        ("GET", "/api/v1/pods", "list"),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1", "list"),
        ("GET", "/api/v1/namespaces/default/pods", "list"),
        ("GET", "/api/v1/namespaces/default/pods/p-1", "single"),
        ("GET", "/api/v1/namespaces/default/pods/p-1/status", "single"),
        ("GET", "/api/v1/namespaces", "list"),
        ("GET", "/api/v1/namespaces/default", "single"),
        ("GET", "/api/v1/nodes/node-1", "single"),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "list"),
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n-1", "single"),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n-1", "single"),
        ("POST", "/api/v1/namespaces/default/pods", "single"),
        ("GET", "/api/v1/pods?watch=true", "watch"),
        ("GET", "/api/v1/watch/pods", "watch"),
        ("GET", "/healthz", "single"),
    ],
)
def test_a_call_is_classed_as_kube_apiserver_would(method: str, path: str, shape: str) -> None:
    assert api_call_shape(method, path) == shape


def test_a_request_mix_entry_gets_its_class_default_unless_it_or_slo_ops_says_otherwise() -> None:
    slo = SloSection.model_validate({"ops": {"get-x": 250}})
    assert http_op_bound(slo, "list-pods", "GET", "/api/v1/pods", None) == 30_000
    assert http_op_bound(slo, "get-pod", "GET", "/api/v1/namespaces/a/pods/b", None) == 1000
    assert http_op_bound(slo, "get-x", "GET", "/api/v1/namespaces/a/pods/b", None) == 250
    assert http_op_bound(slo, "get-x", "GET", "/api/v1/namespaces/a/pods/b", 40) == 40
    assert http_op_bound(slo, "watch", "GET", "/api/v1/pods?watch=1", None) is None
    assert dns_op_bound(slo, "kubernetes.default/A", None) == 100
    assert dns_op_bound(SloSection.model_validate({"dns": {"p99_ms": 50}}), "x/A", None) == 50


def test_agent_operations_take_their_bounds_from_the_profile_slo() -> None:
    profile = validate_profile(
        {
            "name": "t",
            "agents": {
                "kubelet": {},
                "telemetry": {"calls": [{"name": "get-cm", "path": "/api/v1/configmaps"}]},
            },
            "slo": {"api": {"list_p99_ms": 5000}, "ops": {"lease-get": 300}},
        },
        source="t.yaml",
    )
    assert profile.agents is not None
    bounds = api_op_bounds(profile.agents, profile.slo)
    assert bounds["get-cm"] == 5000  # a LIST by its path, whatever its name
    assert bounds["lease-get"] == 300
    assert bounds["lease-renew"] == 1000
    assert "pods-watch" not in bounds


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"slo": {"api": {"list_p99_ms": 0}}}, "slo.api.list_p99_ms"),
        ({"slo": {"dns": {"max_error_rate": 2}}}, "slo.dns.max_error_rate"),
        ({"slo": {"ops": {"x": -1}}}, "slo.ops.x"),
        ({"slo": {"dns": {"p50": 3}}}, "slo.dns.p50"),
    ],
)
def test_bad_slo_fields_are_one_line_naming_the_field(raw: dict[str, object], field: str) -> None:
    base = {"name": "t", "agents": {"kubelet": {}}, **raw}
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")):
        validate_profile(base, source="t.yaml")


def test_require_needs_an_agent_scenario() -> None:
    raw = {
        "name": "t",
        "api": {"mix": [{"name": "a", "path": "/a"}]},
        "load": {"rate_per_s": 10},
        "require": {"min_nodes": 100},
    }
    with pytest.raises(ProfileError, match="require"):
        validate_profile(raw, source="t.yaml")
