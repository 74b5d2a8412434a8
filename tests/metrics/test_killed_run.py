"""A process killed with SIGKILL halfway leaves hlog and timeline files that read back."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadlab.metrics.hlog import read_hlog
from loadlab.metrics.timeline import read_timeline

_CHILD = textwrap.dedent(
    """
    import sys
    from loadlab.metrics.hlog import TargetHlogs
    from loadlab.metrics.recorder import Recorder
    from loadlab.metrics.stats import window_stats
    from loadlab.metrics.timeline import TimelineWriter
    from loadlab.targets.base import Outcome

    out = sys.argv[1]
    S, MS = 1_000_000_000, 1_000_000
    rec = Recorder("api", ["get"], start_ns=0)
    logs = TargetHlogs(out, "api", start_time_epoch_s=1_700_000_000.0)
    timeline = TimelineWriter(out + "/timeline.csv", ["api"], {"api": ["get"]})
    for sec in range(3):
        for i in range(50):
            t = sec * S + i * MS
            rec.on_dispatch(t, t)
            rec.complete(0, Outcome.OK, t, t, t + 4 * MS)
        snap = rec.rotate((sec + 1) * S)
        logs.write(snap)
        timeline.write_row(float(sec + 1), {"api": window_stats([snap])})
    print("ready", flush=True)
    sys.stdin.readline()  # wait here to be killed (the parent holds stdin open)
    """
)


@pytest.mark.realtime
@pytest.mark.timeout(30)
def test_sigkilled_writer_leaves_complete_hlog_and_timeline(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    intervals = read_hlog(tmp_path / "api.hlog")
    assert [(i.start_s, i.histogram.get_total_count()) for i in intervals] == [
        (0.0, 50),
        (1.0, 50),
        (2.0, 50),
    ]
    assert len(read_hlog(tmp_path / "api.uncorrected.hlog")) == 3
    assert [r["api_achieved_per_s"] for r in read_timeline(tmp_path / "timeline.csv")] == [
        50.0,
        50.0,
        50.0,
    ]
