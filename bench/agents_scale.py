"""How many node agents one loadlab process drives: the generator's own figures per cluster size.

Run from the repository root::

    .venv/bin/python bench/agents_scale.py --sizes 1000,5000,10000

For each size it runs ``loadlab run kubelet-baseline --quick --sizes N`` (kubelets, each with its
own watch connection, plus pods resolving through node-local caches) against the embedded
control plane, then reads that size's ``generator`` block from ``summary.json``: the event loop's
lag p99 after the warm-up (how late a kubelet's timer fires: the generator's schedule lag), its
RSS and CPU (with ``--workers``: the busiest worker's CPU, the workers' RSS summed, the worst
worker's lag), and the agents' request counts. It prints one row per size (``--json``: one JSON
object), and the verdict of each size, since a size whose server saturated is still a valid
generator figure but worth knowing.

Not a test: it takes minutes per size (the quick phases, plus seeding the sim).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def run_size(size: int, profile: str, out_root: Path, workers: int = 1) -> dict[str, Any]:
    out = out_root / f"run-{size}-w{workers}"
    cmd = [sys.executable, "-m", "loadlab", "run", profile, "--quick", "--sizes", str(size)]
    cmd += ["--out", str(out), "--quiet", "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    summary = json.loads((out / "summary.json").read_text())
    row: dict[str, Any] = summary["sizes"][0]
    row["exit_code"] = proc.returncode
    row["command"] = " ".join(["loadlab", *cmd[3:]])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="node counts, comma-separated")
    parser.add_argument("--profile", default="kubelet-baseline")
    parser.add_argument(
        "--workers",
        default="1",
        help="generator processes, comma-separated to compare (e.g. 1,2): each size once per count",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="loadlab-agents-scale-") as tmp:
        for size in sizes:
            for workers in counts:
                rows.append(run_size(size, args.profile, Path(tmp), workers))
    if args.json:
        print(json.dumps({"profile": args.profile, "sizes": rows}, indent=2))
        return 0
    print(
        f"{'nodes':>7} {'workers':>7} {'lag p99 ms':>10} {'RSS MiB':>8} {'CPU %':>6} "
        f"{'watches':>8}  verdict"
    )
    for row in rows:
        gen = row["generator"]
        kubelet = row["agents"].get("kubelet", {})
        watches = kubelet.get("ops", {}).get("pods-watch", {}).get("count", 0)
        print(
            f"{row['nodes']:>7,} {gen.get('workers', 1):>7} {gen['schedule_lag_p99_ms']:>10.1f} "
            f"{gen['rss_mb']:>8.0f} "
            f"{gen['cpu_percent']:>6.0f} {watches:>8,}  {row['line']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
