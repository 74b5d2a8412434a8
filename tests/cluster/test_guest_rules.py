"""The rules of a guest on a real cluster, checked before anything connects: writes only in the
run's namespace, caps on rate and connections, Retry-After and the rails on by default."""

from __future__ import annotations

from typing import Any

import pytest

from loadlab.errors import ProfileError
from loadlab.launch_cluster import (
    Targets,
    check_agent_caps,
    check_request_mix,
    max_rate_per_s,
    rails_on,
)
from loadlab.profile import Profile, validate_profile
from loadlab.targets.cluster import api_access

REAL = Targets(api_access("https://192.0.2.10:6443"), "https://192.0.2.10:6443", None, real=True)
LOOPBACK = Targets(api_access("http://127.0.0.1:6443"), "http://127.0.0.1:6443", None, real=False)


def mix_profile(*ops: dict[str, Any], ramp_max: float = 400) -> Profile:
    return validate_profile(
        {
            "name": "t",
            "api": {"mix": list(ops)},
            "load": {"ramp": {"start_per_s": 10, "max_per_s": ramp_max}},
        },
        source="t.yaml",
    )


def test_a_write_outside_the_run_namespace_is_refused_on_a_real_cluster_only() -> None:
    put = {"name": "put-lease", "method": "PUT", "path": "/apis/x/v1/namespaces/a/leases/n"}
    profile = mix_profile(put)
    with pytest.raises(ProfileError, match=r"put-lease \(PUT .*\) writes outside the run's"):
        check_request_mix(profile, REAL, "loadlab-abc")
    assert check_request_mix(profile, LOOPBACK, "loadlab-abc") == profile


def test_the_run_namespace_placeholder_is_filled_in_everywhere() -> None:
    put = {
        "name": "put-cm",
        "method": "PUT",
        "path": "/api/v1/namespaces/{run_namespace}/configmaps/c-{i}",
    }
    for targets in (REAL, LOOPBACK):
        filled = check_request_mix(mix_profile(put), targets, "loadlab-abc")
        assert filled.api is not None
        assert filled.api.mix[0].path == "/api/v1/namespaces/loadlab-abc/configmaps/c-{i}"


def test_reads_anywhere_are_fine_but_the_rate_is_capped_on_a_real_cluster() -> None:
    get = {"name": "get-pods", "path": "/api/v1/pods"}
    check_request_mix(mix_profile(get), REAL, "loadlab-abc")
    too_fast = mix_profile(get, ramp_max=50_000)
    with pytest.raises(ProfileError, match=r"over the cap of 2,000/s \(limits.max_rate_per_s\)"):
        check_request_mix(too_fast, REAL, "loadlab-abc")
    check_request_mix(too_fast, LOOPBACK, "loadlab-abc")  # no cap on loopback
    assert max_rate_per_s(too_fast, LOOPBACK) is None


def test_a_sweep_that_needs_more_connections_than_the_cap_is_refused() -> None:
    profile = validate_profile(
        {"name": "t", "agents": {"kubelet": {}}, "limits": {"max_connections": 1000}},
        source="t.yaml",
    )
    check_agent_caps(profile, REAL, [500], pool=256)
    with pytest.raises(ProfileError, match=r"1,000 nodes need 1,256 connections"):
        check_agent_caps(profile, REAL, [250, 1000], pool=256)


def test_the_rails_are_on_against_a_real_cluster_unless_the_profile_says_no() -> None:
    get = {"name": "get-pods", "path": "/api/v1/pods"}
    assert rails_on(mix_profile(get), REAL)
    assert not rails_on(mix_profile(get), LOOPBACK)
    off = mix_profile(get).model_copy(
        update={"abort": mix_profile(get).abort.model_copy(update={"enabled": False})}
    )
    assert not rails_on(off, REAL)
