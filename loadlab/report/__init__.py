"""Reports over a results folder (HTML, PNG, markdown, perfdash JSON); they read results, so may
not import the engine, targets, sim, session, launch, cli or any wire library."""

from __future__ import annotations

from pathlib import Path

from loadlab.results import write_bytes_atomic, write_json_atomic

__all__ = ["report_command", "write_report"]

REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"
PERFDASH_JSON = "perfdash.json"
PLOTS_DIR = "plots"


def _folder_files(root: Path, written: list[str]) -> list[str]:
    """The run's own files and the report's, relative to the folder, sorted (an earlier
    report's figures are not listed: this report replaces them)."""
    found = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".tmp") and p.parent != root / PLOTS_DIR
    }
    return sorted(found | set(written))


def write_report(result_dir: Path) -> list[Path]:
    """Write report.html, summary.md, perfdash.json and plots/*.png into ``result_dir``
    (replacing the previous report's); return the files written. ``UsageError`` when the folder
    is not a results folder or one of its files cannot be read."""
    # Imported here, not at the top: matplotlib takes ~0.5 s to import, and every ``loadlab``
    # command imports this package to offer ``loadlab report``.
    from loadlab.report.figures import build_figures
    from loadlab.report.markdown import render_markdown
    from loadlab.report.perfdash import run_perfdash
    from loadlab.report.read import load_run
    from loadlab.report.render import render_html

    run = load_run(result_dir)
    figures = build_figures(run)
    plots = result_dir / PLOTS_DIR
    names = [f"{PLOTS_DIR}/{f.name}" for f in figures]
    files = _folder_files(result_dir, [REPORT_HTML, SUMMARY_MD, PERFDASH_JSON, *names])
    written: list[Path] = []
    if figures:
        plots.mkdir(exist_ok=True)
    for figure in figures:
        write_bytes_atomic(plots / figure.name, figure.png)
        written.append(plots / figure.name)
    if plots.is_dir():  # a previous report's figure this run no longer has (e.g. a size gone)
        for stale in plots.glob("*.png"):
            if stale not in written:
                stale.unlink(missing_ok=True)
    write_json_atomic(result_dir / PERFDASH_JSON, run_perfdash(run))
    written.append(result_dir / PERFDASH_JSON)
    write_bytes_atomic(result_dir / SUMMARY_MD, render_markdown(run, files).encode("utf-8"))
    written.append(result_dir / SUMMARY_MD)
    write_bytes_atomic(result_dir / REPORT_HTML, render_html(run, figures, files).encode("utf-8"))
    written.append(result_dir / REPORT_HTML)
    return written


def report_command(result_dir: Path) -> int:
    """``loadlab report RESULT_DIR``: write the report, print where it is."""
    write_report(result_dir)
    print(f"report: {result_dir / REPORT_HTML}")
    return 0
