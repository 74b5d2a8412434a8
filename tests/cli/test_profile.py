"""Profiles: shipped ones validate; bad ones fail with one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadlab.errors import ProfileError
from loadlab.profile import apply_override, load_profile, validate_profile
from loadlab.shipped import ShippedProfile, profile_file, shipped_profiles
from loadlab.targets.dns import DnsQuery, DnsTarget
from loadlab.wiring import dns_queries


@pytest.mark.parametrize("shipped", shipped_profiles(), ids=lambda s: s.name)
def test_shipped_profiles_validate(shipped: ShippedProfile) -> None:
    with profile_file(shipped.name) as path:
        profile = load_profile(path)
    assert profile.name == shipped.name
    assert profile.description == shipped.description


def _minimal() -> dict[str, object]:
    return {
        "name": "t",
        "api": {"mix": [{"name": "get", "path": "/api"}]},
        "load": {"rate_per_s": 10, "duration_s": 1},
    }


def test_misspelt_field_is_named() -> None:
    raw = _minimal()
    raw["load"] = {"rate_per_s": 10, "duraton_s": 1}
    with pytest.raises(ProfileError, match=r"unknown field 'load\.duraton_s'"):
        validate_profile(raw)


def test_wrong_type_names_field_and_value() -> None:
    raw = _minimal()
    raw["load"] = {"rate_per_s": "fast"}
    with pytest.raises(ProfileError, match=r"field 'load\.rate_per_s'.*'fast'"):
        validate_profile(raw)


def test_open_loop_without_rate_or_ramp_is_refused() -> None:
    raw = _minimal()
    raw["load"] = {"mode": "open"}
    with pytest.raises(ProfileError, match="needs rate_per_s or a ramp"):
        validate_profile(raw)


def test_profile_without_targets_is_refused() -> None:
    raw = _minimal()
    del raw["api"]
    with pytest.raises(ProfileError, match="'api' or a 'dns' section"):
        validate_profile(raw)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nload: [unclosed\n")
    with pytest.raises(ProfileError, match="line 2"):
        load_profile(bad)


def test_overrides_reach_nested_fields_and_list_items() -> None:
    raw = _minimal()
    apply_override(raw, "load.rate_per_s=250")
    apply_override(raw, "api.mix.0.weight=3")
    profile = validate_profile(raw)
    assert profile.traffic.rate_per_s == 250
    assert profile.api is not None
    assert profile.api.mix[0].weight == 3


@pytest.mark.parametrize("item", ["noequals", "api.mix.7.weight=1", "=3"])
def test_bad_override_is_a_profile_error(item: str) -> None:
    with pytest.raises(ProfileError, match="--set"):
        apply_override(_minimal(), item)


def test_a_dns_operation_has_one_name_in_the_profile_the_target_and_bench() -> None:
    """hlog tags and summary.json name a DNS operation alike whether ``loadlab run`` (the
    profile's op_name) or bench (``DnsQuery`` straight into ``DnsTarget``) recorded it."""
    profile = validate_profile(
        {
            "name": "t",
            "dns": {
                "queries": [
                    {"name": "kubernetes.default.svc.cluster.local.", "type": "A"},
                    {"name": "web.default.svc.cluster.local", "type": "AAAA"},
                ]
            },
            "load": {"rate_per_s": 10, "duration_s": 1},
        }
    )
    assert profile.dns is not None
    expected = ("a-kubernetes.default.svc.cluster.local", "aaaa-web.default.svc.cluster.local")
    assert tuple(q.op_name for q in profile.dns.queries) == expected
    run_target = DnsTarget("127.0.0.1", 53, dns_queries(profile.dns))  # opens no socket
    assert run_target.op_names == expected
    bench_queries = [
        DnsQuery("kubernetes.default.svc.cluster.local", "A"),
        DnsQuery("web.default.svc.cluster.local", "AAAA"),
    ]
    assert DnsTarget("127.0.0.1", 53, bench_queries).op_names == expected
