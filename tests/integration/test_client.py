"""The ringchat client in script mode against real ringchatd servers: it
finds the leader by broadcast, registers, chats (direct, room, broadcast),
keeps chatting through a kill -9 of the leader with nothing lost or shown
twice, and waits for servers that are not there yet.  Commands go in on
stdin, one JSON line per event comes out."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from cluster import RINGCHAT, free_ports, wait_for


class Client:
    """One ringchat process in script mode; its events collected as they
    come, each stamped with "_t", time.monotonic() when read (the client
    flushes every line)."""

    wait_timeout = 10  # seconds, unless a call says otherwise
    finish_timeout = 20

    def __init__(self, disc_port, user, *extra, timeout=15):
        args = [RINGCHAT, "--user", user, "--discovery-port", str(disc_port),
                "--timeout", str(timeout), *extra]
        self._start(user, user, subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE))

    def _start(self, user, label, proc):
        self.user = user
        self.label = label
        self.proc = proc
        self.events = []
        self.stderr = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.err_reader = threading.Thread(target=self._read_err, daemon=True)
        self.err_reader.start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)  # every line must be one JSON object
            ev["_t"] = time.monotonic()
            with self.lock:
                self.events.append(ev)

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def say(self, *lines):
        self.proc.stdin.write("".join(line + "\n" for line in lines).encode())
        self.proc.stdin.flush()

    def named(self, name):
        with self.lock:
            return [e for e in self.events if e["event"] == name]

    def wait(self, pred, timeout=None, what="an event"):
        def find():
            with self.lock:
                return next((e for e in self.events if pred(e)), None)
        return wait_for(find, timeout or self.wait_timeout, f"{self.label}: {what}")

    def wait_event(self, name, timeout=None, **match):
        return self.wait(lambda e: e["event"] == name and
                         all(e.get(k) == v for k, v in match.items()),
                         timeout, f"{name} {match}")

    def messages(self):
        return self.named("message")

    def texts(self):
        return [m["text"] for m in self.messages()]

    def acked(self):
        return len(self.named("acknowledged"))

    def finish(self, timeout=None):
        """EOF on stdin: the client waits for its acks, logs out, exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        rc = self.proc.wait(timeout=timeout or self.finish_timeout)
        self.reader.join(timeout=5)
        self.err_reader.join(timeout=5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def ready(*cs):
    for c in cs:
        c.wait_event("ready", timeout=15)


def test_two_clients_should_exchange_direct_messages(cluster_factory, clients):
    c = cluster_factory(3).start_all()
    c.wait_leader(timeout=15)
    alice = clients(c.disc_port, "alice")
    bob = clients(c.disc_port, "bob")
    ready(alice, bob)
    leader = alice.named("leader")[0]
    assert leader["leader"] == c.agreed_leader()
    assert leader["port"] == c.by_uuid(leader["leader"]).port

    alice.say("/msg bob hello bob, 100% sure: a@b = c")
    sent = alice.wait_event("sent", to="bob")
    got = bob.wait_event("message", **{"from": "alice"})
    assert got["to"] == "bob"
    assert got["text"] == "hello bob, 100% sure: a@b = c"
    assert got["seq"] >= 1 and got["id"] >= 1
    assert "T" in got["time"] and got["time"].endswith("Z")
    ack = alice.wait_event("acknowledged", cid=sent["cid"])
    assert ack["id"] == got["id"]

    bob.say("/msg alice h\u00e9llo \u20ac")
    back = alice.wait_event("message", **{"from": "bob"})
    assert back["text"] == "h\u00e9llo \u20ac"
    assert alice.finish() == 0 and bob.finish() == 0
    assert alice.named("bye") and bob.named("bye")
    # Nothing shown twice, nothing to oneself.
    assert len(bob.messages()) == 1 and len(alice.messages()) == 1


def test_room_and_broadcast_messages_should_reach_every_member_once(cluster_factory, clients):
    c = cluster_factory(3).start_all()
    c.wait_leader(timeout=15)
    names = ["alice", "bob", "carol", "dave"]
    cl = {n: clients(c.disc_port, n) for n in names}
    ready(*cl.values())
    for n in ("alice", "bob", "carol"):
        cl[n].say("/join #lobby")
    for n in ("alice", "bob", "carol"):
        cl[n].wait_event("joined", room="#lobby")

    # Plain text goes to the current room; the sender is not a recipient.
    cl["alice"].say("hello room")
    for n in ("bob", "carol"):
        m = cl[n].wait_event("message", text="hello room")
        assert m["to"] == "#lobby" and m["from"] == "alice"
    cl["alice"].wait_event("acknowledged")

    cl["bob"].say("/msg * hello everyone")
    for n in ("alice", "carol", "dave"):
        m = cl[n].wait_event("message", text="hello everyone")
        assert m["to"] == "*" and m["from"] == "bob"

    cl["dave"].say("/rooms", "/who #lobby", "/users")
    rooms = cl["dave"].wait_event("list", what="rooms")
    assert rooms["names"] == ["#lobby"]
    who = cl["dave"].wait_event("list", what="who")
    assert sorted(who["names"]) == ["alice", "bob", "carol"]
    users = cl["dave"].wait_event("list", what="users")
    assert sorted(users["names"]) == sorted(names)

    for n in names:
        assert cl[n].finish() == 0, cl[n].stderr
    assert [m["text"] for m in cl["dave"].messages()] == ["hello everyone"]
    assert [m["text"] for m in cl["alice"].messages()] == ["hello everyone"]
    assert sorted(m["text"] for m in cl["carol"].messages()) == \
        ["hello everyone", "hello room"]
    assert [m["text"] for m in cl["bob"].messages()] == ["hello room"]


def test_errors_should_be_clear_and_sent_messages_never_truncated(cluster_factory, clients):
    c = cluster_factory(1).start_all()
    c.wait_leader(timeout=15)
    alice = clients(c.disc_port, "alice")
    ready(alice)
    alice.say("nobody hears this")
    e = alice.wait_event("error", code="not_in_room")
    assert e["message"] == "not in a room"

    alice.say("/msg nosuchuser hi")
    sent = alice.wait_event("sent", to="nosuchuser")
    e = alice.wait_event("error", code="unknown_user")
    assert e["cid"] == sent["cid"] and e["message"]

    # 1000 bytes as encoded pass; one more is refused here, whole.
    alice.say("/msg alice " + "x" * 1000)
    ok = alice.wait_event("message", **{"from": "alice"})
    assert ok["text"] == "x" * 1000
    alice.say("/msg alice " + "@" * 334)
    e = alice.wait_event("error", code="too_long")
    assert "cid" not in e and "1000" in e["message"]

    alice.say("/frobnicate", "/join nohash")
    alice.wait_event("error", code="unknown_command")
    alice.wait_event("error", code="bad_room")
    assert alice.finish() == 0
    assert len(alice.named("sent")) == 2  # the refused one never left


def test_a_burst_longer_than_the_queue_should_arrive_whole_and_in_order(
        cluster_factory, clients):
    c = cluster_factory(3).start_all()
    c.wait_leader(timeout=15)
    alice = clients(c.disc_port, "alice", timeout=30)
    bob = clients(c.disc_port, "bob", timeout=30)
    ready(alice, bob)
    bob.say("/join #burst")
    bob.wait_event("joined")
    n = 700  # more than the 256 the client holds: input waits its turn
    alice.say("/join #burst", *[f"b{i}" for i in range(n)])
    assert alice.finish(timeout=60) == 0, alice.stderr
    assert len(alice.named("acknowledged")) == n
    wait_for(lambda: len(bob.messages()) >= n, 30, "the whole burst")
    assert [m["text"] for m in bob.messages()] == [f"b{i}" for i in range(n)]
    assert bob.finish() == 0


def ops_pair(c, make):
    """alice and bob, script-mode clients made by make, both in #ops."""
    alice = make(c.disc_port, "alice", timeout=30)
    bob = make(c.disc_port, "bob", timeout=30)
    ready(alice, bob)
    alice.say("/join #ops")
    bob.say("/join #ops")
    alice.wait_event("joined")
    bob.wait_event("joined")
    return alice, bob


def test_a_client_should_chat_through_a_kill9_of_the_leader(cluster_factory, clients):
    c = cluster_factory(3).start_all()
    leader = c.wait_leader(timeout=15)
    alice, bob = ops_pair(c, clients)

    n = 60
    for i in range(20):
        alice.say(f"/msg bob d{i}")
        bob.say(f"r{i}")
    wait_for(lambda: len(alice.named("acknowledged")) >= 10, 15, "first acks")
    c.by_uuid(leader).kill(signal.SIGKILL)
    # The rest goes while the client finds the new leader.
    for i in range(20, n):
        alice.say(f"/msg bob d{i}")
        bob.say(f"r{i}")

    wait_for(lambda: len(alice.named("acknowledged")) == n, 40, "every message acknowledged")
    wait_for(lambda: len(bob.named("acknowledged")) == n, 40, "every room message acknowledged")
    wait_for(lambda: len(bob.messages()) >= n and len(alice.messages()) >= n, 40,
             "every message delivered")
    new = c.wait_leader(timeout=10)
    assert new != leader
    for x in (alice, bob):
        r = x.wait_event("reconnected", timeout=30)
        assert r["leader"] == new and r["port"] == c.by_uuid(new).port

    # Exactly once, in order, across the failover.
    assert [m["text"] for m in bob.messages()] == [f"d{i}" for i in range(n)]
    assert [m["text"] for m in alice.messages()] == [f"r{i}" for i in range(n)]
    for x in (alice, bob):
        cids = [e["cid"] for e in x.named("acknowledged")]
        assert sorted(cids) == sorted(set(cids)) and len(cids) == n
        ids = [m["id"] for m in x.messages()]
        assert ids == sorted(set(ids))
        assert not x.named("error"), x.named("error")
    assert alice.finish() == 0 and bob.finish() == 0


def test_a_client_started_before_any_server_should_connect_when_one_appears(
        cluster_factory, clients):
    c = cluster_factory(2)
    alice = clients(c.disc_port, "alice", timeout=30)
    alice.say("/msg alice are you there?")
    # Nobody answers for a while: the client waits, it does not give up.
    with pytest.raises(subprocess.TimeoutExpired):
        alice.proc.wait(timeout=1.5)
    assert not alice.named("ready")
    c.start_all()
    alice.wait_event("ready", timeout=20)
    m = alice.wait_event("message", timeout=10, **{"from": "alice"})
    assert m["text"] == "are you there?"
    assert alice.finish() == 0


def test_no_server_should_exit_3_naming_the_interface_and_port(clients):
    port = free_ports(1)[0]
    alice = clients(port, "alice", timeout=1)
    t0 = time.monotonic()
    assert alice.finish(timeout=10) == 3
    assert time.monotonic() - t0 < 5
    err = alice.stderr.decode()
    assert "127.255.255.255" in err and str(port) in err and " lo " in err
    assert alice.named("error")[0]["code"] == "no_server"


def test_where_should_name_the_leader_and_exit(cluster_factory):
    c = cluster_factory(3).start_all()
    leader = c.wait_leader(timeout=15)
    r = subprocess.run([RINGCHAT, "--user", "alice", "--discovery-port",
                        str(c.disc_port), "--where"], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=20)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["event"] == "leader" and ev["leader"] == leader
    assert ev["port"] == c.by_uuid(leader).port


def test_help_should_document_every_option():
    r = subprocess.run([RINGCHAT, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0
    out = r.stdout.decode()
    for opt in ("--user", "--iface", "--discovery-port", "--server", "--timeout",
                "--alive-ms", "--json", "--where", "--vote", "--help"):
        assert opt in out
    man = open(os.path.join(os.path.dirname(__file__), "..", "..", "man",
                            "ringchat.1")).read()
    for opt in ("user", "iface", "discovery\\-port", "server", "timeout",
                "alive\\-ms", "json", "where", "vote"):
        assert f"Fl \\-{opt}" in man, opt
