"""Fixtures for target tests: a real unbound on loopback (skipped when unbound is missing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadlab.testing.unbound import UnboundServer, running_unbound, unbound_available


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnboundServer]:
    if not unbound_available():
        pytest.skip("unbound is not installed (apt-get install unbound)")
    with running_unbound(tmp_path_factory.mktemp("unbound")) as server:
        yield server
