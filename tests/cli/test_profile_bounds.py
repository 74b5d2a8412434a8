"""Bad profile input, field by field: one ProfileError line that names the field, never a surprise.

Numbers must be finite and within what one machine can do, booleans are not numbers, numbers are
not text, a typo names the field meant, and a file that is not a YAML mapping says what it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from loadlab.cli import main
from loadlab.errors import EXIT_USAGE, ProfileError
from loadlab.profile import apply_override, load_profile, validate_profile
from loadlab.profile_fields import MAX_RATE_PER_S
from loadlab.testing.cli_output import assert_one_clear_line


def _minimal() -> dict[str, object]:
    return {
        "name": "t",
        "api": {"mix": [{"name": "get", "path": "/api"}]},
        "dns": {"queries": [{"name": "kubernetes.default.svc.cluster.local."}]},
        "load": {"rate_per_s": 10, "duration_s": 1},
    }


def _validate_with(*overrides: str) -> None:
    raw = _minimal()
    for item in overrides:
        apply_override(raw, item)
    validate_profile(raw, source="p.yaml")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(
            "load.rate_per_s=.inf",
            "field 'load.rate_per_s': must be a finite number (got inf)",
            id="rate-inf",
        ),
        pytest.param(
            "load.rate_per_s=inf",
            "field 'load.rate_per_s': must be a finite number (got 'inf')",
            id="rate-inf-as-text",
        ),
        pytest.param(
            "load.rate_per_s=.nan",
            "field 'load.rate_per_s': must be a finite number (got nan)",
            id="rate-nan",
        ),
        pytest.param(
            "load.rate_per_s=1e9",
            "field 'load.rate_per_s': must be <= 1,000,000 (got 1,000,000,000)",
            id="rate-1e9-yaml-reads-as-text",
        ),
        pytest.param(
            "load.rate_per_s=1.0e+9",
            "field 'load.rate_per_s': must be <= 1,000,000 (got 1,000,000,000)",
            id="rate-1e9-yaml-float",
        ),
        pytest.param(
            f"load.rate_per_s={'9' * 400}",
            "field 'load.rate_per_s': must be a finite number",
            id="rate-int-beyond-float",
        ),
        pytest.param(
            "api.mix.0.weight=.inf",
            "field 'api.mix.0.weight': must be a finite number (got inf)",
            id="weight-inf",
        ),
        pytest.param(
            "dns.queries.0.weight=-.inf",
            "field 'dns.queries.0.weight': must be a finite number (got -inf)",
            id="dns-weight-minus-inf",
        ),
        pytest.param(
            "api.mix.0.weight=2000000",
            "field 'api.mix.0.weight': must be <= 1,000,000",
            id="weight-too-large",
        ),
        pytest.param(
            "api.mix.0.spread=1000000",
            "field 'api.mix.0.spread': must be <= 100,000",
            id="spread-too-large",
        ),
        pytest.param(
            "api.mix.0.slo_p99_ms=.nan",
            "field 'api.mix.0.slo_p99_ms': must be a finite number",
            id="slo-nan",
        ),
        pytest.param(
            "load.duration_s=100000", "field 'load.duration_s': must be <= 86,400", id="duration"
        ),
        pytest.param(
            "api.timeout_s=1e5", "field 'api.timeout_s': must be <= 3,600", id="api-timeout"
        ),
        pytest.param(
            "dns.timeout_s=.inf", "field 'dns.timeout_s': must be a finite number", id="dns-timeout"
        ),
        pytest.param(
            "api.connections=20000", "field 'api.connections': must be <= 10,000", id="connections"
        ),
        pytest.param(
            "criteria.max_lag_p99_ms=.inf",
            "field 'criteria.max_lag_p99_ms': must be a finite number",
            id="lag-inf",
        ),
        pytest.param(
            "criteria.max_error_rate=.nan",
            "field 'criteria.max_error_rate': must be a finite number",
            id="error-rate-nan",
        ),
        pytest.param(
            "interval_s=.inf", "field 'interval_s': must be a finite number", id="interval"
        ),
        pytest.param("load.seed=-1", "field 'load.seed': must be >= 0", id="negative-seed"),
    ],
)
def test_numbers_must_be_finite_and_within_one_machine(override: str, expected: str) -> None:
    with pytest.raises(ProfileError) as caught:
        _validate_with(override)
    assert f"p.yaml: {expected}" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            ("load.rate_per_s=null", "load.ramp={start_per_s: 1, max_per_s: 2e6}"),
            "field 'load.ramp.max_per_s': must be <= 1,000,000 (got 2,000,000)",
            id="ramp-max",
        ),
        pytest.param(
            ("load.rate_per_s=null", "load.ramp={start_per_s: .inf, max_per_s: 10}"),
            "field 'load.ramp.start_per_s': must be a finite number (got inf)",
            id="ramp-start-inf",
        ),
        pytest.param(
            ("load.rate_per_s=null", "load.ramp={start_per_s: 1, max_per_s: 9, step_s: 4000}"),
            "field 'load.ramp.step_s': must be <= 3,600",
            id="ramp-step",
        ),
        pytest.param(
            ("load.rate_per_s=null", "load.ramp={start_per_s: 1, max_per_s: 9, factor: .inf}"),
            "field 'load.ramp.factor': must be a finite number",
            id="ramp-factor",
        ),
    ],
)
def test_ramp_numbers_are_bounded_too(overrides: tuple[str, ...], expected: str) -> None:
    with pytest.raises(ProfileError) as caught:
        _validate_with(*overrides)
    assert expected in str(caught.value)


def test_rate_at_the_bound_is_accepted_and_left_to_the_run_to_report() -> None:
    raw = _minimal()
    apply_override(raw, f"load.rate_per_s={MAX_RATE_PER_S}")
    assert validate_profile(raw).traffic.rate_per_s == MAX_RATE_PER_S


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param(
            "load={ramp: {start_per_s: 1, max_per_s: 9, step_s: true}}",
            "field 'load.ramp.step_s': must be a number, not true/false (got True)",
            id="bool-for-float",
        ),
        pytest.param(
            "load.rate_per_s=yes",
            "field 'load.rate_per_s': must be a number, not true/false (got True)",
            id="yaml-yes-for-float",
        ),
        pytest.param(
            "api.connections=true",
            "field 'api.connections': must be a whole number, not true/false (got True)",
            id="bool-for-int",
        ),
        pytest.param(
            "api.connections=64.5",
            "field 'api.connections': must be a whole number (got 64.5)",
            id="fraction-for-int",
        ),
        pytest.param(
            "name=5", "field 'name': must be text (quote it in YAML) (got 5)", id="int-for-name"
        ),
        pytest.param(
            "dns.queries.0.name=true",
            "field 'dns.queries.0.name': must be text (quote it in YAML) (got True)",
            id="bool-for-text",
        ),
        pytest.param(
            "api.honour_retry_after=1",
            "field 'api.honour_retry_after': must be a valid boolean (got 1)",
            id="int-for-bool",
        ),
        pytest.param(
            "load.rate_per_s=fast",
            "field 'load.rate_per_s': must be a number (got 'fast')",
            id="word-for-float",
        ),
        pytest.param(
            "load=null",
            "field 'load' is required (or an 'agents' section)",
            id="null-for-section",
        ),
    ],
)
def test_types_are_strict_where_yaml_would_surprise(override: str, expected: str) -> None:
    raw = _minimal()
    apply_override(raw, override)
    with pytest.raises(ProfileError) as caught:
        validate_profile(raw, source="p.yaml")
    assert str(caught.value) == f"p.yaml: {expected}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("200", 200.0, id="int"),
        pytest.param("200.5", 200.5, id="float"),
        pytest.param("2e3", 2000.0, id="exponent-without-dot"),
    ],
)
def test_plain_numbers_still_work_for_float_fields(value: str, expected: float) -> None:
    raw = _minimal()
    apply_override(raw, f"load.rate_per_s={value}")
    assert validate_profile(raw).traffic.rate_per_s == expected


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        pytest.param(
            {"ramp": {"start_per_s": 200, "max_per_sec": 800}},
            "unknown field 'load.ramp.max_per_sec' (did you mean 'max_per_s'?)",
            id="misspelt-required-field",
        ),
        pytest.param(
            {"rate_per_s": 10, "duraton_s": 1},
            "unknown field 'load.duraton_s' (did you mean 'duration_s'?)",
            id="misspelt-optional-field",
        ),
        pytest.param(
            {"rate_per_s": 10, "zzz": 1},
            "unknown field 'load.zzz' (expected one of: mode, arrival, rate_per_s,",
            id="nothing-close",
        ),
    ],
)
def test_a_typo_is_reported_with_the_field_meant(load: dict[str, object], expected: str) -> None:
    raw = _minimal()
    raw["load"] = load
    with pytest.raises(ProfileError) as caught:
        validate_profile(raw, source="p.yaml")
    assert str(caught.value).startswith(f"p.yaml: {expected}")
    assert "more" not in str(caught.value)  # the missing field it explains is not counted


def test_a_typo_inside_a_list_item_suggests_from_that_items_fields() -> None:
    raw = _minimal()
    apply_override(raw, "api.mix.0.wieght=2")
    with pytest.raises(ProfileError) as caught:
        validate_profile(raw, source="p.yaml")
    assert str(caught.value) == "p.yaml: unknown field 'api.mix.0.wieght' (did you mean 'weight'?)"


def test_a_typo_is_reported_before_other_errors_and_they_are_counted() -> None:
    raw = _minimal()
    raw["load"] = {"rate_per_s": -1, "duraton_s": 1}
    with pytest.raises(ProfileError) as caught:
        validate_profile(raw, source="p.yaml")
    assert str(caught.value) == (
        "p.yaml: unknown field 'load.duraton_s' (did you mean 'duration_s'?); and 1 more"
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param(
            "load=5",
            "--set load: 'load' is a section; set a field, e.g. load.FIELD=...",
            id="section-by-scalar",
        ),
        pytest.param(
            "api.mix=5",
            "--set api.mix: 'api.mix' is a list; set an item, e.g. api.mix.0.FIELD=...",
            id="list-by-scalar",
        ),
        pytest.param(
            "api.mix.99.weight=1",
            "--set api.mix.99.weight: '99' is not an index of the list (indices: 0 to 0)",
            id="index-out-of-range",
        ),
        pytest.param(
            "api.mix.-1.weight=1",
            "--set api.mix.-1.weight: '-1' is not an index of the list (indices: 0 to 0)",
            id="negative-index",
        ),
        pytest.param(
            "=3", "--set '=3': expected key=value, e.g. load.ramp.max_per_s=5000", id="empty-key"
        ),
        pytest.param(
            "load..rate=1",
            "--set load..rate: empty part in the key; expected e.g. load.rate_per_s",
            id="empty-part",
        ),
        pytest.param(
            "load.=1",
            "--set load.: empty part in the key; expected e.g. load.rate_per_s",
            id="trailing-dot",
        ),
        pytest.param(
            "name.x=1",
            "--set name.x: 'name' is a single value, not a section",
            id="field-inside-a-value",
        ),
    ],
)
def test_bad_set_is_one_profile_error(item: str, expected: str) -> None:
    with pytest.raises(ProfileError) as caught:
        apply_override(_minimal(), item)
    assert str(caught.value) == expected


def test_set_may_replace_a_section_by_a_mapping_or_remove_it() -> None:
    raw = _minimal()
    apply_override(raw, "load={rate_per_s: 7}")
    apply_override(raw, "dns=null")
    profile = validate_profile(raw)
    assert profile.traffic.rate_per_s == 7
    assert profile.dns is None


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(bytes(range(256)), "not a text file (UTF-8 YAML expected)", id="binary"),
        pytest.param(b"name: t\x00\n", "not a text file (UTF-8 YAML expected)", id="nul-byte"),
        pytest.param(b"name: t\x07\n", "not a text file (UTF-8 YAML expected)", id="bell"),
        pytest.param(b"", "is empty", id="empty"),
        pytest.param(b"# nothing\n", "is empty", id="only-comment"),
        pytest.param(b"- a\n- b\n", "is a list", id="list"),
        pytest.param(b"5\n", "is a single value (5)", id="scalar"),
        pytest.param(
            b"seed: " + b"9" * 5000 + b"\n", "holds a number too long to read", id="huge-integer"
        ),
        pytest.param(b"[" * 50_000 + b"]" * 50_000, "nested too deeply", id="deep-nesting"),
        pytest.param(
            b"# " + b"x" * 2_000_000 + b"\n", "larger than 1,000,000 bytes", id="too-large"
        ),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_says_what_it_is(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = _write(tmp_path / "p.yaml", content)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"profile {path}: {expected}")


def test_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(tmp_path)
    assert str(caught.value) == f"profile {tmp_path}: is a directory, expected a YAML file"


def test_a_device_is_refused_before_reading_it() -> None:
    with pytest.raises(ProfileError, match="profile /dev/zero: not a regular file"):
        load_profile("/dev/zero")


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.yaml",
        b"\xef\xbb\xbfname: t\napi: {mix: [{name: g, path: /}]}\nload: {rate_per_s: 1}\n",
    )
    assert load_profile(path).name == "t"


@pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.yaml", b"name: t\n")
    path.chmod(0)
    with pytest.raises(ProfileError, match=r"cannot read it \(Permission denied\)"):
        load_profile(path)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/mem is Linux's")
def test_a_read_error_is_one_clear_line() -> None:
    # Reading /proc/self/mem at offset 0 fails with EIO even for root: a real OSError on read.
    with pytest.raises(ProfileError, match=r"profile /proc/self/mem: cannot read it \("):
        load_profile("/proc/self/mem")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--set", "load.ramp.max_per_s=.inf"],
            "field 'load.ramp.max_per_s': must be a finite number (got inf)",
            id="inf-rate",
        ),
        pytest.param(
            ["--set", "load.ramp.step_s=true"],
            "field 'load.ramp.step_s': must be a number, not true/false",
            id="bool-step",
        ),
        pytest.param(
            ["--set", "load.ramp.max_per_sec=800"],
            "unknown field 'load.ramp.max_per_sec' (did you mean 'max_per_s'?)",
            id="typo",
        ),
        pytest.param(["--set", "load=5"], "--set load: 'load' is a section", id="section-by-5"),
        pytest.param(
            ["--set", "api.mix.99.weight=1"], "'99' is not an index of the list", id="index"
        ),
    ],
)
def test_cli_refuses_bad_profile_input_with_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["run", "http-knee", *args]) == EXIT_USAGE
    assert expected in assert_one_clear_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "is a directory", id="directory"),
        pytest.param(b"\xff\xfe\x00binary", "not a text file", id="binary"),
        pytest.param(b"- a\n", "is a list", id="list"),
        pytest.param(b"", "is empty", id="empty"),
    ],
)
def test_cli_refuses_a_profile_that_is_not_a_yaml_mapping(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "p.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["run", str(path)]) == EXIT_USAGE
    assert f"profile {path}: {expected}" in assert_one_clear_line(capsys.readouterr().err)
