"""lancluster: real ringchatd servers and ringchat clients on the hosts of a
virtual LAN (tools/ringlan.py), with the default ports and `--iface eth0`.

Each server runs on a host of its own, discovers the others by broadcast on
10.77.0.255 with no configuration, and keeps its state in a temporary
directory; clients run on other hosts.  Everything is ended by PID when the
cluster stops, and the LAN's namespaces are removed by the fixture.
"""

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import ringlan  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import cluster as loopback  # noqa: E402
import test_client as loopback_client  # noqa: E402
from cluster import ordered_uuids, wait_for  # noqa: E402,F401

BUILD = os.environ.get("RINGCHAT_BUILD", os.path.join(ROOT, "build"))
RINGCHATD = os.path.join(BUILD, "ringchatd")
RINGCHAT = os.path.join(BUILD, "ringchat")


class Server(loopback.Server):
    """ringchatd on one host of the LAN (process handling as on loopback)."""

    def __init__(self, cluster, idx, host, uuid):
        self.cluster = cluster
        self.idx = idx
        self.host = host
        self.uuid = uuid
        self.name = f"srv{idx}"
        base = os.path.join(cluster.tmp, self.name)
        self.state_dir = base
        self.events = base + ".events"
        self.log = base + ".log"
        self.proc = None
        self.logf = None
        os.makedirs(self.state_dir, exist_ok=True)

    def start(self, extra=()):
        args = [RINGCHATD, "--iface", ringlan.IFACE, "--name", self.name,
                "--uuid", self.uuid, "--state-dir", self.state_dir,
                "--events", self.events, *self.cluster.extra, *extra]
        self.logf = open(self.log, "ab")
        self.proc = self.host.popen(args, stdin=subprocess.PIPE,
                                    stdout=self.logf, stderr=self.logf)
        return self

    def users(self):
        """{name: online} from `ctl users`, or None."""
        if not self.alive():
            return None
        try:
            rc, out, _ = self.ctl("users")
        except subprocess.TimeoutExpired:
            return None
        if rc != 0 or " users, " not in out:
            return None
        users = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 2:
                users[f[0]] = f[1] == "online"
        return users

    def events_named(self, name, since_us=0):
        return [e for e in self.events_list()
                if e["event"] == name and e["t_mono_us"] >= since_us]

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


class Client(loopback_client.Client):
    """The real ringchat client in script mode on a host of the LAN (events
    and process handling as on loopback)."""

    wait_timeout = 15
    finish_timeout = 30

    def __init__(self, host, user, *extra, timeout=30):
        self.host = host
        args = [RINGCHAT, "--user", user, "--iface", ringlan.IFACE,
                "--timeout", str(timeout), *extra]
        self._start(user, f"{user}@{host.name}", host.popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE))


class LanCluster:
    """n servers on hosts 1..n of a LAN of n + clients hosts; client host k
    (0-based) is host n + 1 + k."""

    def __init__(self, lan, tmp, n, extra=()):
        self.lan = lan
        self.tmp = str(tmp)
        self.extra = list(extra)
        uuids = ordered_uuids(n)
        self.servers = [Server(self, i, lan[i + 1], uuids[i]) for i in range(n)]
        self.clients = []

    def client_host(self, k):
        return self.lan[len(self.servers) + 1 + k]

    def start_all(self):
        for s in self.servers:
            s.start()
        return self

    def client(self, k, user, *extra, **kw):
        c = Client(self.client_host(k), user, *extra, **kw)
        self.clients.append(c)
        return c

    def stop(self):
        for c in self.clients:
            c.kill()
        for s in self.servers:
            s.kill(signal.SIGKILL)

    def live(self):
        return [s for s in self.servers if s.alive()]

    def by_uuid(self, u):
        return next(s for s in self.servers if s.uuid == u)

    def agreed_leader(self, servers=None):
        """The leader every given live server names, with exactly one of them
        leading, all in one epoch; or None."""
        servers = [s for s in (servers or self.servers) if s.alive()]
        st = [s.status() for s in servers]
        if not st or any(v is None for v in st):
            return None
        leaders = {v["leader"] for v in st}
        roles = [v["role"] for v in st]
        if len(leaders) != 1 or None in leaders or roles.count("leader") != 1:
            return None
        if any(r not in ("leader", "backup") for r in roles):
            return None
        if len({v["epoch"] for v in st}) != 1:
            return None
        return leaders.pop()

    def wait_leader(self, timeout=15, servers=None, exclude=None):
        def cond():
            lead = self.agreed_leader(servers)
            return lead if lead and lead != exclude else None
        return wait_for(cond, timeout, "one agreed leader")

    def leaders(self):
        """UUIDs of the live servers whose role is leader."""
        return [s.uuid for s in self.live() if (s.status() or {}).get("role") == "leader"]
