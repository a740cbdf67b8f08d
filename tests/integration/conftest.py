"""Fixtures for the integration tests: real binaries on loopback."""

import os

import pytest

from cluster import RINGCHATD, Cluster


def pytest_sessionstart(session):
    if not os.access(RINGCHATD, os.X_OK):
        raise pytest.UsageError(f"{RINGCHATD} is not built: run make first")


@pytest.fixture
def cluster_factory(tmp_path):
    made = []

    def make(n, extra=()):
        c = Cluster(tmp_path, n, extra)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
