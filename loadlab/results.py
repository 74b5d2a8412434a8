"""The results folder: where a run writes, as it goes, everything needed to read it back.

Layout of ``results/<profile>-<UTC timestamp>/``:
  profile.resolved.json   the profile after --set/--api/--dns, as validated
  timeline.csv            one row per interval (flushed per row)
  api.hlog, dns.hlog      HdrHistogram interval logs, corrected for coordinated omission
  *.uncorrected.hlog      the same, latency from the actual send
  steps.jsonl             one line per finished step of a ramp (appended as steps end)
  summary.json            written at the end (atomically), schema ``loadlab.summary/v1``
A run killed halfway keeps everything but summary.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from loadlab.errors import UsageError

SUMMARY_SCHEMA = "loadlab.summary/v1"


def default_out_dir(profile_name: str, root: Path = Path("results")) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{profile_name}-{stamp}"


def prepare_out_dir(path: Path) -> Path:
    """Create the folder; refuse one that already holds a summary (never overwrite a result)."""
    if (path / "summary.json").exists():
        raise UsageError(f"--out {path}: already holds a finished run; choose another folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create it ({exc.strerror})") from None
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


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
