"""Encrypted client sessions in a keyed cluster (docs/SECURITY.md, "Client
sessions"): ringchat pins the cluster's key on first use and shows its
fingerprint, speaks only inside its session, and refuses an impostor's key;
the leader refuses plain client datagrams with a reason, replays, forged
senders and wrong passwords; sessions carry on across a failover."""

import base64
import os
import re
import signal
import socket

from cluster import wait_for
from sealing import Session, pk_from_text
from test_security import keygen


def fingerprint(server):
    rc, out, _ = server.ctl("status")
    assert rc == 0
    m = re.search(r"cluster fingerprint: (\S+)", out)
    assert m, out
    return m.group(1)


def sessions(server):
    rc, out, _ = server.ctl("status")
    assert rc == 0
    m = re.search(r"client sessions: (\d+) live, (\d+) created; refused: plain (\d+), "
                  r"bad tag (\d+), replayed (\d+), too old (\d+), old epoch (\d+), "
                  r"malformed (\d+), busy (\d+); unsent without a session (\d+)", out)
    assert m, out
    return dict(zip(("live", "created", "plain", "bad_tag", "replayed", "too_old",
                     "old_epoch", "malformed", "busy", "unsent"), map(int, m.groups())))


def keyed(cluster_factory, tmp_path, n=2):
    key = keygen(tmp_path / "cluster.key")
    c = cluster_factory(n, extra=("--cluster-key", key)).start_all()
    leader = c.by_uuid(c.wait_leader(timeout=15))
    return c, leader


def pw_file(tmp_path, user, pw=None):
    path = tmp_path / f"{user}.pw"
    path.write_text((pw or f"secret of {user}") + "\n")
    return str(path)


def person(clients, c, tmp_path, user, pw=None, *extra):
    return clients(c.disc_port, user, "--known-clusters", str(tmp_path / "known"),
                   "--password-file", pw_file(tmp_path, user, pw), *extra)


def ask(sock, data, to, timeout=5):
    """Sends data to `to` and returns the first answer (bytes)."""
    sock.settimeout(timeout)
    sock.sendto(data, to)
    d, _ = sock.recvfrom(2000)
    return d


def where(sock, leader):
    """The leader's plain answer to `where`: its fields."""
    d = ask(sock, b"where@*@@mallory", ("127.0.0.1", leader.port))
    fields = dict(f.split("=", 1) for f in d.decode().split("@")[4:])
    assert d.startswith(b"leader@"), d
    return fields


def test_keyed_clients_should_chat_sealed_and_pin_the_clusters_key(
        cluster_factory, clients, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path)
    fp = fingerprint(leader)
    alice = person(clients, c, tmp_path, "alice")
    alice.wait_event("ready")
    pinned = alice.wait_event("pinned")
    assert pinned["fingerprint"] == fp and pinned["cluster"] == "lan"
    known = (tmp_path / "known").read_text()
    lines = [x for x in known.splitlines() if not x.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("lan "), known
    bob = person(clients, c, tmp_path, "bob")
    bob.wait_event("ready")
    assert bob.wait_event("cluster")["fingerprint"] == fp  # already pinned
    alice.say("/msg bob under seal")
    assert bob.wait_event("message", **{"from": "alice"})["text"] == "under seal"
    assert alice.finish() == 0 and bob.finish() == 0
    st = sessions(leader)
    assert st["created"] >= 2 and st["bad_tag"] == 0 and st["plain"] == 0


def test_a_client_should_refuse_a_key_other_than_the_pinned_one(
        cluster_factory, clients, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path)
    # Pinned earlier: another cluster's key under the same name.
    other = Session(pk_from_text(where(socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                                       leader)["pk"]))
    fake = "lan " + base64.urlsafe_b64encode(other.pk).decode().rstrip("=")
    (tmp_path / "known").write_text(fake + "\n")
    mallory_victim = clients(c.disc_port, "alice", "--known-clusters",
                             str(tmp_path / "known"), "--password-file",
                             pw_file(tmp_path, "alice"), timeout=2)
    assert mallory_victim.finish() == 3  # no server it could trust
    err = mallory_victim.stderr.decode()
    assert "pinned" in err and "ignored" in err, err
    assert (tmp_path / "known").read_text() == fake + "\n"  # never replaced


def test_plain_client_datagrams_should_be_refused_with_a_reason(
        cluster_factory, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    info = where(tx, leader)  # where stays plain, and names the key
    assert len(pk_from_text(info["pk"])) == 32
    before = sessions(leader)["plain"]
    for d in (b"newu@@@mallory", b"login@@@alice", b"msg@bob@hi@alice@cid=1"):
        answer = ask(tx, d, ("127.0.0.1", leader.port))
        assert answer.startswith(b"err@") and b"@code=sealed" in answer, answer
        assert b"encrypted session" in answer
    assert sessions(leader)["plain"] == before + 3
    tx.close()


def test_a_forged_or_replayed_session_datagram_should_be_refused(
        cluster_factory, clients, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    info = where(tx, leader)
    epoch = int(info["epoch"])
    me = Session(pk_from_text(info["pk"]))
    to = ("127.0.0.1", leader.port)
    # Our own session works: the leader answers inside it.
    d = me.seal(b"users@@@mallory", epoch)
    answer = me.open(ask(tx, d, to))
    assert answer is not None and answer.startswith(b"err@mallory@"), answer
    # The same bytes again: a replay, refused without an answer.
    r0 = sessions(leader)
    tx.sendto(d, to)
    wait_for(lambda: sessions(leader)["replayed"] > r0["replayed"], 5, "the replay refused")
    # A flipped bit anywhere: refused.
    bad = bytearray(me.seal(b"users@@@mallory", epoch))
    bad[-20] ^= 1
    tx.sendto(bytes(bad), to)
    wait_for(lambda: sessions(leader)["bad_tag"] > r0["bad_tag"], 5, "the forgery refused")
    # Another epoch than the leader's: refused, and the leader says where
    # it is and in which epoch (inside the session it knows for us).
    hint = me.open(ask(tx, me.seal(b"users@@@mallory", epoch + 1), to))
    assert hint.startswith(b"leader@") and f"@epoch={epoch}@".encode() in hint, hint
    wait_for(lambda: sessions(leader)["old_epoch"] > r0["old_epoch"], 5, "counted")
    tx.close()


def test_sessions_should_carry_on_across_a_failover(cluster_factory, clients, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path, n=3)
    alice = person(clients, c, tmp_path, "alice")
    bob = person(clients, c, tmp_path, "bob")
    alice.wait_event("ready")
    bob.wait_event("ready")
    for i in range(10):
        alice.say(f"/msg bob before {i}")
    wait_for(lambda: len(alice.named("acknowledged")) >= 10, 15, "first acks")
    leader.kill(signal.SIGKILL)
    for i in range(10):
        alice.say(f"/msg bob after {i}")
    new = c.wait_leader(timeout=15)
    assert new != leader.uuid
    want = [f"before {i}" for i in range(10)] + [f"after {i}" for i in range(10)]
    wait_for(lambda: [m["text"] for m in bob.named("message")] == want, 20,
             "every message once, in order, through the new leader")
    assert alice.finish() == 0 and bob.finish() == 0
    st = sessions(c.by_uuid(new))
    assert st["live"] >= 2 and st["bad_tag"] == 0 and st["replayed"] == 0
    # Neither client was asked anything again: one ready each, no error.
    for x in (alice, bob):
        assert len(x.named("ready")) == 1 and not x.named("error"), x.events


def test_passwords_should_be_required_checked_and_slowed_down(
        cluster_factory, clients, tmp_path):
    c, leader = keyed(cluster_factory, tmp_path)
    known = str(tmp_path / "known")
    # Registration in a keyed cluster sets a password; none: refused.
    bare = clients(c.disc_port, "dora", "--known-clusters", known)
    assert bare.finish() != 0
    assert bare.wait_event("error")["code"] == "password_required"
    alice = person(clients, c, tmp_path, "alice", "right one")
    alice.wait_event("ready")
    assert alice.finish() == 0
    # Only a hash is stored, and replicated.
    def users_json(s):
        path = os.path.join(s.state_dir, "users.json")
        return open(path).read() if os.path.exists(path) else ""
    for s in c.servers:
        wait_for(lambda: "$argon2id$" in users_json(s), 10,
                 f"{s.name}: the hash in users.json")
        assert "right one" not in users_json(s)
    # A wrong password: refused (after a delay).
    wrong = person(clients, c, tmp_path, "alice", "wrong one")
    e = wrong.wait_event("error", timeout=10)
    assert e["code"] == "bad_password", e
    assert wrong.finish() != 0
    # Two guesses at once: one is checked and refused after its delay,
    # the other is told to slow down while that check or delay runs, so
    # guesses cannot run in parallel past the delays.
    pw2, pw3 = tmp_path / "g2", tmp_path / "g3"
    pw2.write_text("guess two\n")
    pw3.write_text("guess three\n")
    guesses = [clients(c.disc_port, "alice", "--known-clusters", known,
                       "--password-file", str(p)) for p in (pw2, pw3)]
    codes = sorted(g.wait_event("error", timeout=15)["code"] for g in guesses)
    assert codes == ["bad_password", "slow_down"], codes
    assert all(g.finish() != 0 for g in guesses)
    back = person(clients, c, tmp_path, "alice", "right one")
    back.wait_event("ready", timeout=40)
    assert back.finish() == 0
