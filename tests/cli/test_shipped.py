"""Shipped profiles: found by name as package data, from a directory or a zip, and hinted at when
a name is misspelt or an old profiles/NAME.yaml path is given."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from loadlab.cli import main
from loadlab.errors import ProfileError
from loadlab.profile import load_profile
from loadlab.shipped import closest_shipped, find_shipped, profile_file, shipped_profiles

SHIPPED_NAMES = [
    "dns-knee",
    "dns-ndots-storm",
    "dns-throughput",
    "http-knee",
    "http-throughput",
    "kubelet-baseline",
    "openai-2024-telemetry",
]


def test_the_shipped_profiles_ship_inside_the_package() -> None:
    shipped = shipped_profiles()
    assert [s.name for s in shipped] == SHIPPED_NAMES
    assert all(s.description for s in shipped)
    assert all(Path(str(s.resource)).parent.name == "profiles" for s in shipped)


def test_profiles_command_lists_each_by_name_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == SHIPPED_NAMES
    http_knee = find_shipped("http-knee")
    assert http_knee is not None
    assert lines[SHIPPED_NAMES.index("http-knee")].endswith(http_knee.description)


def test_a_name_reads_the_shipped_profile_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with profile_file("dns-knee") as path:
        assert load_profile(path).name == "dns-knee"


def test_an_existing_file_wins_over_a_shipped_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "http-knee").write_text("name: mine\n")
    with profile_file("http-knee") as path:
        assert path == Path("http-knee")


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("my-profile.yaml", id="own-file"),
        pytest.param("http-knee.yaml", id="shipped-name-with-suffix-is-a-path"),
        pytest.param("nope", id="unknown-name"),
    ],
)
def test_anything_else_is_the_path_as_given(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with profile_file(given) as path:
        assert path == Path(given)


def test_a_profile_in_a_zipped_package_is_extracted_while_read(tmp_path: Path) -> None:
    # A package imported from a zip hands out zipfile.Path resources, not files on disk.
    archive = tmp_path / "package.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("profiles/tiny.yaml", "name: tiny\ndescription: A tiny one.\n")
        zf.writestr("profiles/notes.txt", "not a profile")
    root = zipfile.Path(archive, "profiles/")
    assert [(s.name, s.description) for s in shipped_profiles(root)] == [("tiny", "A tiny one.")]
    with profile_file("tiny", root) as path:
        assert path.read_text() == "name: tiny\ndescription: A tiny one.\n"
    assert not path.exists()


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        pytest.param("http-kne", "http-knee", id="typo"),
        pytest.param("dns_knee", "dns-knee", id="underscore"),
        pytest.param("knee", None, id="ambiguous"),
        pytest.param("my-profile", None, id="unrelated"),
    ],
)
def test_closest_shipped_guesses_only_when_one_name_is_close(name: str, meant: str | None) -> None:
    assert closest_shipped(name) == meant


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("profiles/http-knee.yaml", id="old-path"),
        pytest.param("http-kne", id="typo"),
    ],
)
def test_missing_profile_names_the_shipped_one_meant(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProfileError) as caught:
        load_profile(given)
    assert str(caught.value) == (
        f"profile {given}: no such file (did you mean the shipped profile http-knee? "
        "loadlab run http-knee)"
    )


def test_missing_profile_far_from_any_shipped_name_has_no_hint(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(tmp_path / "my-profile.yaml")
    assert str(caught.value).endswith("no such file")
