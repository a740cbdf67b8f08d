"""Fixtures for the integration tests: real binaries on loopback."""

import os

import pytest

import test_client  # the script-mode client
from cluster import RINGCHATD, Cluster, private_config  # noqa: F401 (a fixture)


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
    # Under `make sanitize` a server that hit a memory or UB error aborts
    # with a report in its log: that fails the test even if it passed.
    for c in made:
        for s in c.servers:
            if os.path.exists(s.log):
                text = s.log_text()
                for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
                    if marker in text:
                        pytest.fail(f"{s.name}: {marker} report in {s.log}")


@pytest.fixture
def clients():
    made = []

    def make(*args, **kw):
        c = test_client.Client(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.kill()
