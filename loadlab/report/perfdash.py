"""``perfdash.json``: the run's per-operation latency in clusterloader2's perfdash shape, so
dashboards that already read Kubernetes scalability results read loadlab's too.

perfdash reads ``{"version": "v1", "dataItems": [{"data": {...}, "unit": ..., "labels": {...}}]}``
(clusterloader2's ``measurement/util.PerfData``); its labels are strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadlab.report.read import RunFolder
from loadlab.report.tables import LatencyRow, latency_rows

PERFDASH_VERSION = "v1"


def perfdash(profile_name: str, rows: Sequence[LatencyRow]) -> dict[str, Any]:
    """One data item per (size, target or kind, operation) that completed anything."""
    items = [
        {
            "data": {
                "Perc50": row.latency.p50_ms,
                "Perc90": row.latency.p90_ms,
                "Perc99": row.latency.p99_ms,
            },
            "unit": "ms",
            "labels": {
                "Profile": profile_name,
                "Size": str(row.size) if row.size is not None else "",
                "Target": row.group,
                "Operation": row.op,
                "Count": str(row.latency.count),
            },
        }
        for row in rows
        if row.latency.count > 0
    ]
    return {"version": PERFDASH_VERSION, "dataItems": items}


def profile_name(run: RunFolder) -> str:
    """The profile's name as the run recorded it (the folder's name when nothing did)."""
    name = (run.summary or {}).get("profile") or run.profile.get("name")
    return name if isinstance(name, str) and name else run.path.name


def run_perfdash(run: RunFolder) -> dict[str, Any]:
    return perfdash(profile_name(run), latency_rows(run))
