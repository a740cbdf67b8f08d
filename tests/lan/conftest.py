"""Fixtures for the virtual-LAN tests: a LAN of network namespaces per test,
real binaries on its hosts, everything removed afterwards and checked gone.

These tests need root or a user namespace (`make lan-test` runs them under
`unshare -rn` when not root).  Where namespaces cannot be made they fail,
loudly: they are never skipped."""

import os
import subprocess

import pytest

from lancluster import RINGCHAT, RINGCHATD, LanCluster, ringlan
from cluster import private_config  # noqa: F401,E402 (a fixture; tests/integration)


def root_links():
    """The interfaces of the namespace the tests run in, which must not change."""
    r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, check=True)
    return sorted(line.split(":")[1].strip() for line in r.stdout.decode().splitlines())


def pytest_sessionstart(session):
    for b in (RINGCHATD, RINGCHAT):
        if not os.access(b, os.X_OK):
            raise pytest.UsageError(f"{b} is not built: run make first")
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "tests/lan need root or a user namespace: run `make lan-test`, or "
            "`unshare -rn /usr/bin/python3 -m pytest tests/lan`")
    ringlan.check_tools()


def _check_gone(lans, before):
    for lan in lans:
        lan.close()
    for lan in lans:
        left = lan.leftovers()
        assert not left, f"processes left in the LAN's namespaces: {left}"
    assert root_links() == before, "the test namespace's interfaces changed"


@pytest.fixture
def lan_factory():
    """lan_factory(hosts) -> a ringlan.Lan, closed and checked after the test."""
    before = root_links()
    made = []

    def make(hosts):
        lan = ringlan.Lan(hosts)
        made.append(lan)
        return lan

    yield make
    _check_gone(made, before)


@pytest.fixture
def lan_cluster(tmp_path):
    """lan_cluster(n, clients=2) -> a LanCluster of n servers on hosts 1..n and
    `clients` more hosts for clients, on a fresh LAN."""
    before = root_links()
    made = []

    def make(n, clients=2, extra=()):
        lan = ringlan.Lan(n + clients)
        c = LanCluster(lan, tmp_path / f"cluster{len(made)}", n, extra)
        made.append((lan, c))
        return c

    try:
        yield make
    finally:
        for _, c in made:
            c.stop()
        _check_gone([lan for lan, _ in made], before)
    # Under a sanitizer build a server's report fails the test.
    for _, c in made:
        for s in c.servers:
            text = s.log_text()
            for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
                if marker in text:
                    pytest.fail(f"{s.name}: {marker} report in {s.log}")
