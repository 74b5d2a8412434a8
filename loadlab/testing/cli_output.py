"""What a user sees when the CLI refuses: exactly one ``loadlab: ...`` line, never a traceback."""

from __future__ import annotations


def assert_one_clear_line(stderr: str) -> str:
    """Assert ``stderr`` is one ``loadlab: ...`` line with no traceback; return that line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("loadlab: "), stderr
    assert "Traceback" not in stderr
    return lines[0]
