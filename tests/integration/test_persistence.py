"""The chat journal in the real ringchatd: a whole cluster killed with
kill -9 and started again keeps every acknowledged message; a stale
server that comes back as leader takes in what the others had (merge);
damaged state files stop a server with the file and line, --recover
moves them aside."""

import glob
import os

from cluster import wait_for
from test_relay import Raw, leader_port


def send_acked(alice, to, texts, start_cid=1):
    """Sends each text with its own cid; returns once each is acknowledged."""
    for i, t in enumerate(texts):
        cid = start_cid + i
        k, _, e = alice.rpc(f"msg@{to}@{t}@alice@cid={cid}", "msg", timeout=5)
        assert k == "ok", (t, e)


def login_and_collect(port, name, n, timeout=15):
    """A fresh client for name logs in and collects n deliveries."""
    c = Raw(name)
    c.port = port
    k, _, e = c.rpc(f"login@@@{name}", "login", timeout=5)
    assert k == "ok", e
    wait_for(lambda: (c.pump(timeout=0.2), len(c.got) >= n)[1], timeout,
             f"{n} messages for {name}")
    c.pump(timeout=0.5)  # anything more would be a duplicate
    return c


def test_a_whole_cluster_restart_should_keep_every_acknowledged_message(
        cluster_factory):
    c = cluster_factory(3).start_all()
    port, _ = leader_port(c)
    a, b = Raw("alice"), Raw("bob")
    try:
        a.join(port)
        b.join(port)
        k, _, e = b.rpc("logout@@@bob", "logout")
        assert k == "ok", e
        # Some hold newlines (escaped on the wire): one journal line each.
        texts = [f"kept-{i}" if i % 3 else f"kept-{i}%0Aline two%0A"
                 for i in range(30)]
        send_acked(a, "bob", texts)
    finally:
        a.close()
        b.close()
    for s in c.servers:
        s.kill()
    for s in c.servers:
        assert os.path.getsize(os.path.join(s.state_dir, "chat.log")) > 0
    c.start_all()
    port, _ = leader_port(c)
    bob = login_and_collect(port, "bob", 30)
    try:
        assert [t for (_, _, _, t, _) in bob.got] == texts
        assert len({i for (i, _, _, _, _) in bob.got}) == 30
    finally:
        bob.close()


def test_a_stale_server_restarted_as_leader_should_merge_what_others_kept(
        cluster_factory):
    c = cluster_factory(3).start_all()
    port, leader = leader_port(c)
    top = c.servers[2]
    assert leader == top.uuid
    a, b = Raw("alice"), Raw("bob")
    try:
        a.join(port)
        b.join(port)
        k, _, e = b.rpc("logout@@@bob", "logout")
        assert k == "ok", e
        # Registrations are answered before the backups have them: wait.
        wait_for(lambda: all(_relay_version(s) == _relay_version(top)
                             for s in c.servers), 10, "backups in step")
        # The highest server dies; the others go on without it.
        top.kill()
        wait_for(lambda: c.agreed_leader() == c.servers[1].uuid, 15,
                 "srv1 leading")
        a.port = c.servers[1].port
        k, _, e = a.rpc("login@@@alice", "login", timeout=5)
        assert k == "ok", e
        texts = [f"while-away-{i}" for i in range(20)]
        send_acked(a, "bob", texts)
    finally:
        a.close()
        b.close()
    for s in c.servers:
        s.kill()
    # All back: the stale one has the highest UUID and leads again.
    c.start_all()
    wait_for(lambda: c.agreed_leader() == top.uuid, 20, "srv2 leading")
    wait_for(lambda: any(e["event"] == "merge" for e in top.events_list()),
             15, "the merge of a backup's newer state")
    bob = login_and_collect(top.port, "bob", 20)
    try:
        assert [t for (_, _, _, t, _) in bob.got] == texts
    finally:
        bob.close()


def _corrupt_line(path, line_no):
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert len(lines) > line_no, len(lines)
    ln = bytearray(lines[line_no - 1])
    ln[-1] = ord("X") if ln[-1] != ord("X") else ord("Y")
    lines[line_no - 1] = bytes(ln)
    data = b"\n".join(lines)
    with open(path, "wb") as f:
        f.write(data)
    return data


def test_a_damaged_journal_should_stop_the_server_and_recover_should_refetch(
        cluster_factory):
    c = cluster_factory(3).start_all()
    port, _ = leader_port(c)
    a = Raw("alice")
    try:
        a.join(port)
        send_acked(a, "alice", [f"note-{i}" for i in range(5)])
    finally:
        a.close()
    victim = c.servers[0]
    wait_for(lambda: len(open(os.path.join(victim.state_dir,
                                           "chat.log")).readlines()) >= 4,
             10, "ops in the backup's journal")
    victim.kill()
    log = os.path.join(victim.state_dir, "chat.log")
    damaged = _corrupt_line(log, 2)

    victim.start()
    assert victim.proc.wait(timeout=10) != 0
    text = victim.log_text()
    assert "chat.log:2:" in text, text[-2000:]
    assert "--recover" in text
    with open(log, "rb") as f:
        assert f.read() == damaged  # kept as it was

    victim.start(extra=["--recover"])
    wait_for(lambda: glob.glob(log + ".corrupt-*"), 10, "the journal moved aside")

    def caught_up():
        lead = c.by_uuid(c.agreed_leader() or c.servers[2].uuid)
        return (victim.alive() and
                _relay_version(victim) is not None and
                _relay_version(victim) == _relay_version(lead))
    wait_for(caught_up, 15, "the recovered backup caught up")


def _relay_version(s):
    try:
        rc, out, _ = s.ctl("users")
    except Exception:
        return None
    if rc != 0 or "relay version" not in out:
        return None
    return int(out.split("relay version ")[1].split(")")[0])


def test_a_corrupt_users_json_should_stop_the_server_naming_file_and_line(
        cluster_factory):
    c = cluster_factory(1)
    s = c.servers[0]
    path = os.path.join(s.state_dir, "users.json")
    with open(path, "w") as f:
        f.write('{"version": 1,\n "users": [ {"name": "alice",, }\n')
    s.start()
    assert s.proc.wait(timeout=10) != 0
    text = s.log_text()
    assert "users.json:2" in text, text[-2000:]
    with open(path) as f:
        assert "alice" in f.read()  # never overwritten
