"""The results folder: where a run writes, as it goes, everything needed to read it back.

Layout of ``results/<profile>-<UTC timestamp>/``:
  profile.resolved.json   the profile after --set/--api/--dns, as validated
  timeline.csv            one row per interval (flushed per row)
  api.hlog, dns.hlog      HdrHistogram interval logs, corrected for coordinated omission
  *.uncorrected.hlog      the same, latency from the actual send
  steps.jsonl             one line per finished step of a ramp (appended as steps end)
  summary.json            written at the end (atomically), schema ``loadlab.summary/v1``
  run.id                  created first, exclusively: the run id and pid that own the folder
  loadlab-error.log       only after an internal error: the traceback
A run killed halfway keeps everything but summary.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from loadlab.errors import UsageError

SUMMARY_SCHEMA = "loadlab.summary/v1"


RUN_ID_FILE = "run.id"
ERROR_LOG = "loadlab-error.log"
_MAX_SUFFIX = 1000
"""Runs of one profile started in the same second get -2, -3, ... up to this."""


def default_out_dir(profile_name: str, root: Path = Path("results")) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{profile_name}-{stamp}"


def create_unique_dir(base: Path) -> Path:
    """Create ``base``, or ``base-2``, ``base-3``, ...: the first that did not exist. ``mkdir``
    is atomic, so two runs started in the same second never share a folder."""
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"results folder {base.parent}: cannot create it ({_why(exc)})") from None
    for n in range(1, _MAX_SUFFIX + 1):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"results folder {path}: cannot create it ({_why(exc)})") from None
        return path
    raise UsageError(f"results folder {base}: {_MAX_SUFFIX} runs already share its name")


def claim_out_dir(path: Path, run_id: str) -> Path:
    """Make ``path`` this run's own, before any traffic: create it (an existing empty folder is
    fine), then create ``run.id`` exclusively. Refuses a folder that holds another run (finished,
    running or killed), and one that cannot be written, with one line (exit 2)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create it ({_why(exc)})") from None
    if not path.is_dir():
        raise UsageError(f"--out {path}: not a folder")
    if (path / "summary.json").exists() or (path / RUN_ID_FILE).exists():
        raise UsageError(f"--out {path}: already holds a run; choose another folder")
    try:
        fd = os.open(path / RUN_ID_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"--out {path}: another run is using it; choose another folder") from None
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write there ({_why(exc)})") from None
    try:
        os.write(fd, f"{run_id} pid {os.getpid()}\n".encode())
        os.fsync(fd)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write there ({_why(exc)})") from None
    finally:
        os.close(fd)
    return path


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_json_atomic(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via ``<name>.tmp``, fsync and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        # A write cut short (disk full, interrupted) leaves no half file beside the whole ones.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: Any) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def rounded(obj: Any, digits: int = 3) -> Any:
    """``obj`` with every float rounded, through dicts and lists: results meant to be read."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


def write_error_log(exc: BaseException, folder: Path | None) -> Path:
    """Write ``exc``'s traceback to ``folder/loadlab-error.log`` (or a temporary file when there
    is no folder, or it cannot be written) and return where it went."""
    text = "".join(traceback.format_exception(exc))
    if folder is not None:
        path = folder / ERROR_LOG
        try:
            path.write_text(text)
            return path
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="loadlab-error-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(name)
