"""The built wheel stands on its own: installed into a fresh venv and run from outside the
checkout, it lists the shipped profiles and runs one to completion; imported from the wheel as a
zip, it still finds them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from loadlab.shipped import shipped_profiles

pytestmark = [pytest.mark.slow, pytest.mark.realtime, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
PIP = (sys.executable, "-m", "pip")
SHIPPED_NAMES = [p.name for p in shipped_profiles()]
"""What the source tree ships: the wheel must ship the same."""
BUILD_S = 120.0
"""Bound on building the wheel (under 1 s here) or creating the venv."""
INSTALL_S = 300.0
"""Bound on installing the wheel's dependencies (~10 s from pip's cache; minutes when cold)."""
RUN_S = 120.0
"""Bound on one loadlab command; the short run below takes ~7 s (2 steps of 2.5 s and start-up)."""
# The shipped http-knee ramp, shortened: 200/s then 400/s (the maximum), 2 s steps. 100 nodes,
# not fewer: the lease operations address node-0..node-99 (spread: 100), and a smaller sim
# answers half of them 404, so the first step fails and the ramp bisects down for ~30 s.
SHORT_RUN = (
    *("--set", "load.ramp.max_per_s=400", "--set", "load.ramp.step_s=2"),
    *("--set", "load.ramp.warmup_s=0.5", "--set", "sim.nodes=100", "--quiet"),
)


def _run(
    args: list[str | Path], cwd: Path, timeout_s: float, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # Nothing of the checkout leaks in: no PYTHONPATH but the one given, and the cwd outside it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loadlab's wheel, built from a copy of the sources so that the build's build/ and
    *.egg-info land in a temporary folder, not in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "loadlab", src / "loadlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: this venv's setuptools builds it, rather than one downloaded each time.
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
    _ok(_run([*PIP, *build, out, src], cwd=out, timeout_s=BUILD_S))
    [built] = out.glob("loadlab-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a fresh venv (no system site-packages) with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv, timeout_s=BUILD_S))
    # Dependencies come from the package index, as for a user's `pip install`, so a dependency
    # missing from pyproject.toml fails here (a venv seeing this one's packages would hide it).
    # They are pinned to the versions this venv runs, which pip's cache then serves: ~10 s warm.
    # (A wheelhouse made from this venv would need the index too: pip cannot re-pack installed
    # packages.) This venv's pip installs into the fresh one (--python), sparing it a pip.
    pins = venv / "constraints.txt"
    pins.write_text(
        "".join(
            f"{dist.metadata['Name']}=={dist.version}\n"
            for dist in metadata.distributions()
            if dist.metadata["Name"].lower() != "loadlab"
        )
    )
    python = venv / "bin" / "python"
    _ok(_run([*PIP, "--python", python, "install", "-q", "-c", pins, wheel], venv, INSTALL_S))
    return venv / "bin"


def test_installed_wheel_lists_and_runs_a_shipped_profile_from_outside_the_checkout(
    venv_bin: Path, tmp_path: Path
) -> None:
    where = _ok(
        _run([venv_bin / "python", "-c", "import loadlab; print(loadlab.__file__)"], tmp_path, 60)
    )
    assert Path(where.strip()).is_relative_to(venv_bin.parent), where

    listed = _ok(_run([venv_bin / "loadlab", "profiles"], tmp_path, RUN_S))
    assert [line.split()[0] for line in listed.splitlines()] == SHIPPED_NAMES

    out = tmp_path / "out"
    result = _run(
        [venv_bin / "loadlab", "run", "http-knee", *SHORT_RUN, "--out", out], tmp_path, RUN_S
    )
    # Whether this box's server passes is not the point (1: it failed, 4: the generator was the
    # limit, on a busy machine); that the installed package ran the profile to its end is.
    assert result.returncode in (0, 1, 4), f"{result.stdout}\n{result.stderr}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["profile"] == "http-knee"
    assert summary["exit_code"] == result.returncode


def test_package_imported_from_the_zipped_wheel_finds_its_profiles(
    wheel: Path, tmp_path: Path
) -> None:
    # A wheel is a zip that Python can import from: each profile is then a zipfile.Path, read
    # through a temporary file. This venv has the dependencies; the wheel comes first on the path.
    cli = (
        "import sys, loadlab.cli; "
        "assert loadlab.cli.__file__.startswith(sys.argv[1]), loadlab.cli.__file__; "
        "sys.exit(loadlab.cli.main(sys.argv[2:]))"
    )
    loadlab: list[str | Path] = [sys.executable, "-c", cli, wheel]

    listed = _ok(_run([*loadlab, "profiles"], tmp_path, RUN_S, pythonpath=wheel))
    assert [line.split()[0] for line in listed.splitlines()] == SHIPPED_NAMES

    # A bad override is refused only once the profile was read and parsed, before any load.
    bad = ("--set", "load.ramp.factor=0.5")
    refused = _run([*loadlab, "run", "http-knee", *bad], tmp_path, RUN_S, pythonpath=wheel)
    assert refused.returncode == 2, refused.stderr
    assert "load.ramp.factor" in refused.stderr
    assert "no such file" not in refused.stderr
