"""The relay in the real ringchatd: chat through the leader, replication to
the backups, failover with exactly-once delivery, catch-up, bad input.
Clients here are raw UDP sockets speaking docs/RELAY.md."""

import signal
import socket
import threading
import time

from cluster import wait_for


def fields(datagram):
    parts = datagram.split("@")
    ext = dict(p.split("=", 1) for p in parts[4:] if "=" in p)
    return parts[0], parts[1], parts[2], parts[3], ext


class Raw:
    """A minimal client: one socket, requests, deliveries acked on receipt."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = None
        self.got = []  # (id, seq, dest, text, from)
        self.replies = []

    def close(self):
        self.sock.close()

    def send(self, text, port=None):
        self.sock.sendto(text.encode(), ("127.0.0.1", port or self.port))

    def pump(self, until=None, timeout=2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = self.sock.recv(2000).decode()
            except socket.timeout:
                if until is None:
                    return None
                continue
            kind, to, body, frm, ext = fields(d)
            if kind == "msg":
                self.send(f"ack@@@{self.name}@id={ext['id']}")
                self.got.append((int(ext["id"]), int(ext["seq"]), to, body, frm))
                continue
            self.replies.append((kind, body, ext))
            if until is not None and until(kind, body, ext):
                return kind, body, ext
        if until is not None:
            raise AssertionError(f"{self.name}: no matching answer in {timeout}s")
        return None

    def rpc(self, text, re, port=None, timeout=2.0):
        self.send(text, port)
        return self.pump(lambda k, b, e: e.get("re") == re, timeout)

    def join(self, port):
        self.port = port
        k, _, e = self.rpc(f"newu@@@{self.name}", "newu")
        assert k == "ok", e
        k, _, e = self.rpc(f"login@@@{self.name}", "login")
        assert k == "ok", e


def leader_port(c):
    leader = c.wait_leader(timeout=15)
    return c.by_uuid(leader).port, leader


def test_direct_room_and_broadcast_messages_should_reach_their_recipients(cluster_factory):
    c = cluster_factory(3).start_all()
    port, _ = leader_port(c)
    a, b, d = Raw("alice"), Raw("bob"), Raw("dave")
    try:
        for x in (a, b, d):
            x.join(port)
        k, _, e = a.rpc("msg@bob@hi bob@alice@cid=1", "msg")
        assert k == "ok" and e["cid"] == "1"
        wait_for(lambda: b.pump() or b.got, 3, "bob's delivery")
        assert b.got[0][3] == "hi bob" and b.got[0][4] == "alice"
        for x in (a, b):
            assert x.rpc("join@#lobby@@" + x.name, "join")[0] == "ok"
        assert a.rpc("msg@#lobby@hello room@alice@cid=2", "msg")[0] == "ok"
        wait_for(lambda: b.pump() or any(g[2] == "#lobby" for g in b.got), 3, "room msg")
        assert a.rpc("msg@*@hello all@alice@cid=3", "msg")[0] == "ok"
        wait_for(lambda: d.pump() or any(g[2] == "*" for g in d.got), 3, "broadcast")
        wait_for(lambda: b.pump() or any(g[2] == "*" for g in b.got), 3, "broadcast to bob")
        # dave is not in #lobby: he got only the broadcast.
        assert [g[2] for g in d.got] == ["*"]
        # Every server holds the same replica; users.json lists them.
        wait_for(lambda: all("3 users" in s.ctl("users")[1] for s in c.servers), 5,
                 "users replicated to every server")
        assert "#lobby" in c.servers[0].ctl("rooms")[1]
    finally:
        for x in (a, b, d):
            x.close()


def test_errors_should_be_clear_and_change_nothing(cluster_factory):
    c = cluster_factory(2).start_all()
    port, _ = leader_port(c)
    a, b, m = Raw("alice"), Raw("bob"), Raw("mallory")
    try:
        a.join(port)
        b.join(port)
        m.port = port
        assert a.rpc("msg@nobody@hi@alice@cid=1", "msg")[2]["code"] == "unknown_user"
        assert a.rpc("msg@#nowhere@hi@alice@cid=2", "msg")[2]["code"] == "not_in_room"
        assert a.rpc("msg@bob@" + "x" * 1001 + "@alice@cid=3", "msg")[2]["code"] == "too_long"
        # mallory sends as alice from another address.
        assert m.rpc("msg@bob@forged@alice@cid=9", "msg")[2]["code"] == "forged_sender"
        assert m.rpc("newu@@@alice", "newu")[2]["code"] == "name_taken"
        assert m.rpc("login@@@ghost", "login")[2]["code"] == "unknown_user"
        b.pump(timeout=0.5)
        assert b.got == []  # nothing was relayed
        # A backup refuses clients and names the leader.
        backup = next(s for s in c.servers if s.port != port)
        k, _, e = a.rpc("login@@@alice", "login", port=backup.port)
        assert k == "err" and e["code"] == "not_leader" and int(e["port"]) == port
    finally:
        for x in (a, b, m):
            x.close()


def test_offline_messages_should_be_pushed_on_login(cluster_factory):
    c = cluster_factory(2).start_all()
    port, _ = leader_port(c)
    a, b = Raw("alice"), Raw("bob")
    try:
        a.join(port)
        b.join(port)
        assert b.rpc("logout@@@bob", "logout")[0] == "ok"
        for i in range(1, 4):
            assert a.rpc(f"msg@bob@while away {i}@alice@cid={i}", "msg")[0] == "ok"
        b.pump(timeout=0.3)
        assert b.got == []
        assert b.rpc("login@@@bob", "login")[0] == "ok"
        wait_for(lambda: b.pump() or len(b.got) >= 3, 5, "queued messages")
        assert [g[3] for g in b.got] == ["while away 1", "while away 2", "while away 3"]
    finally:
        a.close()
        b.close()


def test_killing_the_leader_while_sending_should_lose_and_duplicate_nothing(cluster_factory):
    c = cluster_factory(3).start_all()
    port, leader = leader_port(c)
    a, b = Raw("alice"), Raw("bob")
    acked = {}
    try:
        a.join(port)
        b.join(port)
        stop = threading.Event()

        def receiver():
            while not stop.is_set():
                b.pump(timeout=0.05)
        t = threading.Thread(target=receiver)
        t.start()
        cid = 0
        killed = False
        deadline = time.monotonic() + 60
        while cid < 60 and time.monotonic() < deadline:
            cid += 1
            if cid == 20 and not killed:
                c.by_uuid(leader).kill(signal.SIGKILL)
                killed = True
            # Resend the same cid until some leader acknowledges it.
            while True:
                a.send(f"msg@bob@m{cid}@alice@cid={cid}")
                try:
                    r = a.pump(lambda k, bd, e: e.get("re") == "msg" and e.get("cid") == str(cid)
                               or e.get("code") == "not_leader", timeout=0.3)
                except AssertionError:
                    r = None
                if r and r[0] == "ok":
                    acked[cid] = int(r[2]["id"])
                    break
                if r and r[2].get("code") == "not_leader" and "port" in r[2]:
                    a.port = b.port = int(r[2]["port"])
                    continue
                # No answer: the leader may be gone; find the one they agree on.
                new = c.agreed_leader()
                if new and c.by_uuid(new).port != a.port:
                    a.port = b.port = c.by_uuid(new).port
                    for x in (a, b):
                        x.send(f"login@@@{x.name}")
        assert len(acked) == 60, f"only {len(acked)} acknowledged"
        wait_for(lambda: len({g[3] for g in b.got}) >= 60, 15, "all 60 delivered")
        stop.set()
        t.join(timeout=5)
        # Exactly once per id after de-duplication by id; in order.
        by_id = {}
        for g in b.got:
            by_id.setdefault(g[0], g)
        assert sorted(g[3] for g in by_id.values()) == sorted(f"m{i}" for i in range(1, 61))
        ordered = [by_id[i][3] for i in sorted(by_id)]
        assert ordered == [f"m{i}" for i in range(1, 61)]
        # Each acknowledged cid kept one id across the failover.
        assert len(set(acked.values())) == 60
        # Retransmissions happen (a late ack, an ack lost with the dying
        # leader); each repeat must be the same id, seq and text, so the
        # client's de-duplication by id shows every message once.
        assert all(by_id[g[0]] == g for g in b.got), "a repeat changed id or content"
    finally:
        a.close()
        b.close()


def test_a_backup_restarted_with_kill9_should_catch_up(cluster_factory):
    c = cluster_factory(3).start_all()
    port, leader = leader_port(c)
    backup = next(s for s in c.servers if s.uuid != leader)
    a = Raw("alice")
    try:
        a.join(port)
        backup.kill(signal.SIGKILL)
        users = []
        for i in range(20):
            x = Raw(f"user{i}")
            x.join(port)
            users.append(x)
        backup.start()
        wait_for(lambda: (backup.status() or {}).get("role") == "backup", 10, "backup back")
        wait_for(lambda: "21 users" in backup.ctl("users")[1], 10, "backup caught up")
        assert c.agreed_leader() == leader  # no election
        for x in users:
            x.close()
    finally:
        a.close()
