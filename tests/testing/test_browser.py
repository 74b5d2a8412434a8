"""The headless-Chromium page checker sees what a browser sees, stays off the network, and leaves
no Chromium and no profile behind, whichever way it ends.

Tests marked ``needs_chromium`` start the real Debian Chromium; ``make test`` installs it, so
when it is missing they fail (BrowserError: not on PATH) rather than skip. The start-failure tests
put small shell scripts in Chromium's place: real processes that fail as a broken install would.
"""

from __future__ import annotations

import os
import struct
import zlib
from base64 import b64encode
from pathlib import Path

import pytest

from loadlab.testing.browser import BrowserError, inspect_page

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TALL_PX = 1500
"""Taller than Chromium's 800x600 headless window: a screenshot this tall was taken full-page."""


def png_bytes(width: int, height: int) -> bytes:
    """A valid RGB PNG, all red: signature, IHDR, one zlib IDAT, IEND (RFC 2083)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG: {data[:8]!r}"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def group_alive(pid: int) -> bool:
    """Whether any process of the group Chromium led (browser, renderers, GPU helper) is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_page(path: Path, body: str, title: str = "page") -> Path:
    path.write_text(f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body>")
    return path


def stand_in(tmp_path: Path, behaviour: str) -> tuple[str, Path]:
    """A script in Chromium's place that records its arguments and HOME, then does
    ``behaviour``."""
    args = tmp_path / "args"
    script = tmp_path / "fake-chromium"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "HOME=$HOME" > {args}\n{behaviour}\n')
    script.chmod(0o755)
    return str(script), args


def profile_of(args: Path) -> Path:
    flag = next(a for a in args.read_text().splitlines() if a.startswith("--user-data-dir="))
    return Path(flag.removeprefix("--user-data-dir="))


@pytest.mark.needs_chromium
def test_report_counts_decoded_and_broken_images_and_finds_the_table_by_id(
    tmp_path: Path,
) -> None:
    good = b64encode(png_bytes(4, 3)).decode()
    page = write_page(
        tmp_path / "report.html",
        f'<h1>Run</h1><img alt="good" src="data:image/png;base64,{good}">'
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<table id="steps"><caption>Steps</caption><tr><th>offered</th></tr>'
        "<tr><td>100</td></tr><tr><td>200</td></tr></table>"
        f'<div style="height:{TALL_PX}px"></div><a href="#steps">steps</a>',
        title="loadlab report",
    )
    shot = tmp_path / "shot.png"

    report = inspect_page(page, screenshot=shot)

    assert report.title == "loadlab report"
    assert len(report.images) == 2
    good_image, broken_image = report.images
    assert (good_image.decoded, good_image.natural_width, good_image.natural_height) == (
        True,
        4,
        3,
    )
    assert broken_image.is_data_uri
    assert broken_image.complete
    assert not broken_image.decoded
    assert report.undecoded_images == (broken_image,)
    assert not report.all_images_decoded
    steps = report.table("steps")
    assert (steps.caption, steps.rows) == ("Steps", 3)
    with pytest.raises(KeyError, match="found: 'steps'"):
        report.table("knee")
    assert report.external_refs == ()  # data URIs and #fragments are not references out
    assert report.failed_loads == ()
    assert report.text_length > 0
    assert report.screenshot == shot
    width, height = png_size(shot)
    assert width > 0
    assert height >= TALL_PX
    assert not group_alive(report.browser_pid)


@pytest.mark.needs_chromium
def test_network_references_are_listed_and_never_leave_the_machine(tmp_path: Path) -> None:
    page = write_page(
        tmp_path / "leaky.html",
        # 192.0.2.1 is TEST-NET-1: nothing answers there, so only the resolver rules can make the
        # load fail at once with a name error instead of a connect attempt.
        '<img src="http://192.0.2.1/x.png"><a href="https://example.invalid/">out</a>',
    )

    report = inspect_page(page)

    assert report.external_refs == ("http://192.0.2.1/x.png", "https://example.invalid/")
    assert [(f.url, f.error) for f in report.failed_loads] == [
        ("http://192.0.2.1/x.png", "net::ERR_NAME_NOT_RESOLVED")
    ]
    assert report.undecoded_images == report.images
    assert not group_alive(report.browser_pid)


@pytest.mark.needs_chromium
def test_a_missing_page_is_chromiums_file_not_found_in_one_line_and_chromium_is_gone(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "report.html"

    with pytest.raises(BrowserError) as caught:
        inspect_page(missing)

    message = str(caught.value)
    assert message == f"chromium could not open {missing.as_uri()}: net::ERR_FILE_NOT_FOUND"
    assert caught.value.browser_pid is not None
    assert not group_alive(caught.value.browser_pid)


@pytest.mark.realtime  # a real process and a wall-clock deadline
def test_a_chromium_that_exits_at_start_is_one_line_with_its_stderr(tmp_path: Path) -> None:
    binary, args = stand_in(tmp_path, "echo 'Missing X server or $DISPLAY' >&2\nexit 3")

    with pytest.raises(BrowserError) as caught:
        inspect_page(write_page(tmp_path / "p.html", "x"), binary=binary, timeout_s=10)

    assert str(caught.value) == (
        "chromium exited with 3 before it opened its DevTools port "
        "(stderr: Missing X server or $DISPLAY)"
    )
    workdir = profile_of(args).parent
    assert f"HOME={workdir}/home" in args.read_text().splitlines()  # the user's home untouched
    assert not workdir.exists()


@pytest.mark.realtime  # a real process and a wall-clock deadline
def test_a_chromium_that_never_listens_is_killed_at_the_deadline(tmp_path: Path) -> None:
    binary, args = stand_in(tmp_path, "echo starting >&2\nexec sleep 60")

    with pytest.raises(BrowserError) as caught:
        inspect_page(write_page(tmp_path / "p.html", "x"), binary=binary, timeout_s=0.5)

    assert str(caught.value) == (
        "chromium did not open its DevTools port within 0.5 s (stderr: starting)"
    )
    assert caught.value.browser_pid is not None
    assert not group_alive(caught.value.browser_pid)
    assert not profile_of(args).parent.exists()


def test_no_chromium_on_path_is_an_error_that_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: nothing to find

    with pytest.raises(BrowserError, match=r"^chromium or chromium-browser is not on PATH \(make"):
        inspect_page(write_page(tmp_path / "p.html", "x"))
