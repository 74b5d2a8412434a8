"""The end of a run: its report (``loadlab.report``), written before the result lines are
printed so that the verdict stays the last line a person and a pipeline read."""

from __future__ import annotations

import sys
from pathlib import Path

from loadlab.errors import LoadlabError
from loadlab.results import write_error_log


def write_report_quietly(out_dir: Path) -> Path | None:
    """Write the folder's report; return report.html, or None when it could not be written.

    The run's verdict and exit code are already decided and stand whatever happens here: a
    report that cannot be written is one line on stderr (the traceback of a bug goes to the
    folder's error log), and ``loadlab report`` can retry it."""
    from loadlab.report import write_report

    try:
        written = write_report(out_dir)
    except LoadlabError as exc:
        print(f"loadlab: report not written: {exc}", file=sys.stderr)
        return None
    except OSError as exc:  # the folder cannot take it (full, read-only): not a bug
        print(f"loadlab: report not written ({exc.strerror or exc})", file=sys.stderr)
        return None
    except Exception as exc:
        log = write_error_log(exc, out_dir)
        print(
            f"loadlab: report not written (internal error {type(exc).__name__}: {exc}); the "
            f"traceback is in {log}",
            file=sys.stderr,
        )
        return None
    return next((p for p in written if p.name == "report.html"), None)
