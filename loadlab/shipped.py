"""The profiles that ship inside the package (``loadlab/profiles/*.yaml``): the one place that
knows where they live.

They are package data, read with ``importlib.resources``, so ``loadlab run http-knee`` works from
an installed wheel wherever the command is run: from a package unpacked into site-packages (each
profile is then a real file) and from one imported out of a zip (each profile is then extracted to
a temporary file while it is read). Imports nothing of loadlab's, so any module may ask here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

PROFILE_SUFFIX = ".yaml"
CLOSE_NAME_CUTOFF = 0.75
"""difflib's similarity ratio from which a missing profile's name is taken to mean a shipped one:
'http-kne' (0.94), 'dns_knee' (0.88) and 'my-http-knee' (0.86) do; 'knee' (0.62, as close to
dns-knee as to http-knee) and 'my-profile' (0.22) do not. difflib's default, 0.6, would guess."""


@dataclass(frozen=True)
class ShippedProfile:
    """One profile in ``loadlab/profiles``."""

    name: str
    """What ``loadlab run NAME`` takes: the file's name without ``.yaml``."""
    resource: Traversable
    """The file in the package: a ``Path`` when installed as a directory, a ``zipfile.Path`` when
    imported from a zip. Read it with ``read_text()`` or ``profile_file(name)``."""
    description: str
    """The profile's ``description:``, as ``loadlab profiles`` lists it."""


def profiles_root() -> Traversable:
    """The folder of shipped profiles inside the installed package."""
    return files("loadlab").joinpath("profiles")


def shipped_profiles(root: Traversable | None = None) -> list[ShippedProfile]:
    """Every shipped profile, by name."""
    folder = profiles_root() if root is None else root
    found = [
        ShippedProfile(
            name=entry.name.removesuffix(PROFILE_SUFFIX),
            resource=entry,
            description=_description(entry.read_text(encoding="utf-8")),
        )
        for entry in folder.iterdir()
        if entry.name.endswith(PROFILE_SUFFIX) and entry.is_file()
    ]
    return sorted(found, key=lambda shipped: shipped.name)


def find_shipped(name: str, root: Traversable | None = None) -> ShippedProfile | None:
    """The shipped profile called NAME (``http-knee``), or None."""
    return next((s for s in shipped_profiles(root) if s.name == name), None)


def closest_shipped(name: str, root: Traversable | None = None) -> str | None:
    """The shipped profile's name that NAME most likely meant (``http-kne``, or the stem of an
    old ``profiles/http-knee.yaml`` path), or None when none is close."""
    names = [s.name for s in shipped_profiles(root)]
    close = difflib.get_close_matches(name, names, n=1, cutoff=CLOSE_NAME_CUTOFF)
    return close[0] if close else None


@contextmanager
def profile_file(name_or_path: str | Path, root: Traversable | None = None) -> Iterator[Path]:
    """A file to read for NAME_OR_PATH, valid inside the ``with``.

    The path as given when it exists or names a file (has a suffix, as ``my.yaml``); otherwise the
    shipped profile of that name (``http-knee``). When neither exists it is the path as given, so
    the reader reports that file missing (with a hint from ``closest_shipped``).
    """
    path = Path(name_or_path)
    shipped = None if path.exists() or path.suffix else find_shipped(str(name_or_path), root)
    if shipped is None:
        yield path
        return
    # as_file hands back the file itself when the package is a directory and extracts it to a
    # temporary file (removed on exit) when the package is imported from a zip.
    with as_file(shipped.resource) as file:
        yield file


def _description(text: str) -> str:
    # The top-level line alone: listing and looking up by name need not parse every profile, and
    # tests/cli/test_profile.py checks that this reads what the YAML parse does.
    for line in text.splitlines():
        if line.startswith("description:"):
            return line.partition(":")[2].strip()
    return ""
