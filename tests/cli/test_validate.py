"""`loadlab validate`: a profile checked as `run` would, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadlab.cli import main
from loadlab.errors import EXIT_OK, EXIT_USAGE
from loadlab.shipped import shipped_profiles


@pytest.mark.parametrize("name", [p.name for p in shipped_profiles()])
def test_every_shipped_profile_is_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", name]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: valid (profile {name}:")


def test_an_invalid_override_names_the_field_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "http-knee", "--set", "load.ramp.max_per_s=.nan"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "load.ramp.max_per_s" in err[0]


def test_a_misspelt_field_in_a_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\napi: {mix: [{name: a, path: /a}]}\nload: {rate_per_s: 10, duraton_s: 5}\n"
    )
    assert main(["validate", str(profile)]) == EXIT_USAGE
    assert "duraton_s" in capsys.readouterr().err
