"""cluster: start real ringchatd processes on loopback and watch them.

Every cluster gets its own discovery port and temporary state directories,
so tests never hear each other and never touch tracked files.  Processes
are ended by PID when the cluster is stopped, whatever happened.
"""

import json
import os
import random
import signal
import socket
import subprocess
import time
import uuid as uuidlib

import pytest

BUILD = os.environ.get("RINGCHAT_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))
RINGCHATD = os.path.join(BUILD, "ringchatd")
RINGCHAT = os.path.join(BUILD, "ringchat")


def wait_for(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _port_free(port):
    for kind in (socket.SOCK_DGRAM,):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_ports(n, rng=random):
    """n consecutive-pair port bases (data, data+1) that are free now."""
    out = []
    while len(out) < n:
        base = rng.randrange(20000, 60000, 2)
        if base in out or base + 1 in out:
            continue
        if _port_free(base) and _port_free(base + 1):
            out.append(base)
    return out


def ordered_uuids(n):
    """n random UUIDs sorted ascending: index n-1 is the highest."""
    return sorted(str(uuidlib.uuid4()) for _ in range(n))


class Server:
    def __init__(self, cluster, idx, uuid, port, name):
        self.cluster = cluster
        self.idx = idx
        self.uuid = uuid
        self.port = port
        self.name = name
        self.state_dir = os.path.join(cluster.tmp, f"s{idx}")
        self.events = os.path.join(cluster.tmp, f"s{idx}.events")
        self.log = os.path.join(cluster.tmp, f"s{idx}.log")
        self.proc = None
        os.makedirs(self.state_dir, exist_ok=True)

    def start(self, extra=()):
        args = [RINGCHATD, "--name", self.name, "--uuid", self.uuid,
                "--port", str(self.port),
                "--discovery-port", str(self.cluster.disc_port),
                "--state-dir", self.state_dir, "--events", self.events]
        args += list(self.cluster.extra) + list(extra)
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=self.logf, stderr=self.logf)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def stdin(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def ctl(self, *cmd, timeout=5):
        r = subprocess.run([RINGCHATD, "ctl", "--state-dir", self.state_dir, *cmd],
                           capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def status(self):
        """status json, or None while the server cannot answer."""
        if not self.alive():
            return None
        try:
            rc, out, _ = self.ctl("status", "json")
        except subprocess.TimeoutExpired:
            return None
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def events_list(self):
        try:
            with open(self.events) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")


class Cluster:
    def __init__(self, tmp, n, extra=()):
        self.tmp = str(tmp)
        self.extra = list(extra)
        ports = free_ports(n + 1)
        self.disc_port = ports[-1]
        uuids = ordered_uuids(n)
        self.servers = [Server(self, i, uuids[i], ports[i], f"srv{i}")
                        for i in range(n)]

    def start_all(self):
        for s in self.servers:
            s.start()
        return self

    def stop(self):
        for s in self.servers:
            s.kill(signal.SIGKILL)

    def live(self):
        return [s for s in self.servers if s.alive()]

    def statuses(self):
        return {s.idx: s.status() for s in self.live()}

    def agreed_leader(self):
        """The leader uuid every live server names (one leader role), or None."""
        st = self.statuses()
        if not st or any(v is None for v in st.values()):
            return None
        leaders = {v["leader"] for v in st.values()}
        roles = [v["role"] for v in st.values()]
        if len(leaders) != 1 or None in leaders:
            return None
        if roles.count("leader") != 1:
            return None
        if any(r not in ("leader", "backup") for r in roles):
            return None
        epochs = {v["epoch"] for v in st.values()}
        if len(epochs) != 1:
            return None
        return leaders.pop()

    def wait_leader(self, timeout=10):
        return wait_for(self.agreed_leader, timeout, "one agreed leader")

    def by_uuid(self, u):
        return next(s for s in self.servers if s.uuid == u)


@pytest.fixture(autouse=True, scope="session")
def private_config(tmp_path_factory):
    """Clients pin cluster keys under XDG_CONFIG_HOME (or ~/.config): a
    temporary one in tests, never the user's.  Imported by the conftests."""
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    yield
    if old is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = old
