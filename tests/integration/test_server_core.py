"""Server core with the real ringchatd on loopback: discovery, LCR election,
heartbeat failure detection, operator control, bad input."""

import json
import os
import signal
import socket
import time

import pytest

from cluster import wait_for


def events_named(server, name):
    return [e for e in server.events_list() if e["event"] == name]


@pytest.mark.parametrize("n", [3, 5])
def test_servers_should_discover_each_other_and_elect_the_highest_uuid(cluster_factory, n):
    c = cluster_factory(n).start_all()
    leader = c.wait_leader(timeout=15)
    assert leader == c.servers[-1].uuid
    # Every server knows every other one, alive, without configuration.
    for s in c.servers:
        st = s.status()
        assert len(st["ring"]) == n
        assert all(m["alive"] for m in st["ring"])
        # The ring is in UUID order.
        uuids = [m["uuid"] for m in st["ring"]]
        assert uuids == sorted(uuids)


def test_killed_leader_should_be_replaced_by_the_highest_live_uuid(cluster_factory):
    c = cluster_factory(5).start_all()
    old = c.wait_leader(timeout=15)
    top = c.by_uuid(old)
    old_epoch = c.servers[0].status()["epoch"]
    top.kill(signal.SIGKILL)
    t0 = time.monotonic()
    new = c.wait_leader(timeout=10)
    took = time.monotonic() - t0
    assert new == c.servers[-2].uuid
    assert c.servers[0].status()["epoch"] > old_epoch
    # Generous bound; the benchmark measures the real figure.
    assert took < 5, f"failover took {took:.2f}s"
    # The survivors saw the leader stop answering and elected.
    assert any(events_named(s, "heartbeat_timeout") for s in c.live())
    assert events_named(c.by_uuid(new), "win")


def test_vote_on_stdin_should_start_an_election(cluster_factory):
    c = cluster_factory(3).start_all()
    leader = c.wait_leader(timeout=15)
    epoch = c.servers[0].status()["epoch"]
    c.servers[0].stdin("vote")
    wait_for(lambda: all(s.status() and s.status()["epoch"] > epoch for s in c.servers),
             10, "a new epoch everywhere")
    assert c.wait_leader(timeout=10) == leader  # same highest UUID wins again
    assert events_named(c.servers[0], "start")


def test_vote_through_ctl_should_start_an_election(cluster_factory):
    c = cluster_factory(3).start_all()
    c.wait_leader(timeout=15)
    epoch = c.servers[1].status()["epoch"]
    rc, out, _ = c.servers[1].ctl("vote")
    assert rc == 0 and "election" in out
    wait_for(lambda: c.servers[1].status()["epoch"] > epoch, 10, "new epoch")
    c.wait_leader(timeout=10)


def test_restarted_old_leader_should_rejoin_as_backup_without_an_election(cluster_factory):
    c = cluster_factory(3).start_all()
    old = c.wait_leader(timeout=15)
    top = c.by_uuid(old)
    top.kill(signal.SIGKILL)
    new = wait_for(lambda: (lambda l: l if l and l != old else None)(c.agreed_leader()),
                   10, "a new leader")
    epoch = c.by_uuid(new).status()["epoch"]
    top.start()
    wait_for(lambda: (top.status() or {}).get("role") == "backup", 10,
             "old leader back as backup")
    time.sleep(0.5)  # a window in which a wrong election would show
    assert c.wait_leader(timeout=5) == new
    assert all(s.status()["epoch"] == epoch for s in c.servers)


def test_later_joiner_with_higher_uuid_should_not_take_over(cluster_factory):
    c = cluster_factory(4)
    for s in c.servers[:3]:
        s.start()
    first = wait_for(lambda: (lambda st: st if st and st["role"] == "leader" else None)(
        c.servers[2].status()), 15, "server 2 leads")
    epoch = first["epoch"]
    wait_for(lambda: c.agreed_leader() == c.servers[2].uuid, 10, "agreement")
    c.servers[3].start()  # the highest UUID of all, joining late
    wait_for(lambda: (c.servers[3].status() or {}).get("role") == "backup", 10,
             "late joiner is a backup")
    assert c.wait_leader(timeout=5) == c.servers[2].uuid
    assert c.servers[3].status()["epoch"] == epoch
    # And the leader now lists it as a live member.
    wait_for(lambda: len([m for m in c.servers[2].status()["ring"] if m["alive"]]) == 4,
             5, "leader sees 4 members")


def test_quit_on_the_leader_should_hand_over_to_another_server(cluster_factory):
    c = cluster_factory(3).start_all()
    old = c.wait_leader(timeout=15)
    top = c.by_uuid(old)
    top.stdin("quit")
    top.proc.wait(timeout=10)
    assert top.proc.returncode == 0
    new = c.wait_leader(timeout=10)
    assert new == c.servers[1].uuid


def test_status_should_print_role_epoch_leader_and_the_ring(cluster_factory):
    c = cluster_factory(3).start_all()
    c.wait_leader(timeout=15)
    rc, out, _ = c.servers[0].ctl("status")
    assert rc == 0
    assert "role backup" in out and "leader srv2" in out
    assert out.count(" up") >= 3
    rc, out, _ = c.servers[0].ctl("help")
    for cmd in ("vote", "status", "servers", "users", "rooms", "quit"):
        assert cmd in out
    rc, out, _ = c.servers[0].ctl("frobnicate")
    assert "unknown command" in out


def test_identity_should_survive_a_restart_without_uuid_option(cluster_factory, tmp_path):
    c = cluster_factory(1)
    s = c.servers[0]
    s.start()
    wait_for(lambda: (s.status() or {}).get("role") == "leader", 10, "lone leader")
    s.kill()
    with open(os.path.join(s.state_dir, "identity.json")) as f:
        ident = json.load(f)
    assert ident["uuid"] == s.uuid
    # Restart without --uuid: the same identity comes back from the file.
    from cluster import RINGCHATD
    import subprocess
    p = subprocess.Popen([RINGCHATD, "--port", str(s.port), "--discovery-port",
                          str(c.disc_port), "--state-dir", s.state_dir, "--no-stdin"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s.proc = p
        st = wait_for(lambda: s.status(), 10, "status")
        assert st["uuid"] == s.uuid
    finally:
        p.kill()
        p.wait(timeout=10)


def test_corrupt_servers_json_should_stop_the_server_naming_file_and_line(cluster_factory):
    c = cluster_factory(1)
    s = c.servers[0]
    path = os.path.join(s.state_dir, "servers.json")
    bad = '{\n  "version": 1,\n  "epoch": oops\n}\n'
    with open(path, "w") as f:
        f.write(bad)
    s.start()
    s.proc.wait(timeout=10)
    assert s.proc.returncode != 0
    log = s.log_text()
    assert "servers.json:3:" in log
    with open(path) as f:
        assert f.read() == bad  # kept, never overwritten
    # --recover moves it aside and starts.
    s.start(["--recover"])
    wait_for(lambda: (s.status() or {}).get("role") == "leader", 10, "recovered")
    assert any(n.startswith("servers.json.corrupt-") for n in os.listdir(s.state_dir))


def test_hostile_datagrams_should_be_counted_and_change_nothing(cluster_factory):
    c = cluster_factory(3).start_all()
    leader = c.wait_leader(timeout=15)
    st0 = c.servers[0].status()
    victim = c.servers[0]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    ctl = ("127.0.0.1", victim.port + 1)
    forged_leader = "00000000-0000-0000-0000-000000000001"
    junk = [
        b"",  # empty
        b"no separators at all",
        b"@@@",  # empty kind
        b"bogus@a@b@c",  # unknown kind
        b"msg@bob@bad%zzescape@alice",
        b"msg@bob@nul\x00byte@alice",
        b"msg@bob@\xff\xfe@alice",  # invalid UTF-8
        b"beat@x@@y@epoch=1@epoch=2",  # duplicate extension
        b"x" * 2000,  # oversize
        # A leader claim from a non-member with a huge epoch.
        f"leader@*@evil@{forged_leader}@epoch=999999@leader={forged_leader}@hop=1".encode(),
        # A member's identity from the wrong address (forged sender).
        f"leader@*@evil@{c.servers[1].uuid}@epoch=999999@leader={c.servers[1].uuid}@hop=1".encode(),
        # Malformed UUID and epoch.
        b"voting@x@@not-a-uuid@epoch=abc@cand=zz@hop=1",
    ]
    for d in junk:
        tx.sendto(d, ctl)
    tx.sendto(b"bogus@a@b@c", ("127.0.0.1", victim.port))
    tx.close()
    wait_for(lambda: victim.status()["bad_datagrams"] >= len(junk) - 1, 5,
             "bad datagrams counted")
    time.sleep(0.3)
    assert victim.alive()
    assert c.agreed_leader() == leader
    assert victim.status()["epoch"] == st0["epoch"]
    assert "dropped" in victim.log_text() or "bad datagram" in victim.log_text()


def test_static_peers_should_join_servers_that_cannot_hear_broadcasts(cluster_factory, tmp_path):
    c = cluster_factory(3)
    peers = {"version": 0, "epoch": 0, "leader": None, "servers": [
        {"uuid": s.uuid, "name": s.name, "addr": "127.0.0.1", "port": s.port,
         "ctl_port": s.port + 1, "alive": True, "last_seen": None} for s in c.servers]}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(peers))
    # Each server on its own discovery port: broadcasts reach nobody else.
    from cluster import free_ports
    for s, dport in zip(c.servers, free_ports(3)):
        s.start(["--discovery-port", str(dport), "--peers", str(path)])
    assert c.wait_leader(timeout=15) == c.servers[-1].uuid


def test_a_frozen_leader_coming_back_should_step_down_for_the_newer_one(cluster_factory):
    c = cluster_factory(3).start_all()
    old = c.wait_leader(timeout=15)
    top = c.by_uuid(old)
    epoch = c.servers[0].status()["epoch"]
    top.proc.send_signal(signal.SIGSTOP)  # cut off: alive, but silent
    try:
        wait_for(lambda: all((s.status() or {}).get("role") in ("leader", "backup")
                             and s.status()["epoch"] > epoch and s.status()["leader"] != old
                             for s in c.servers if s is not top),
                 10, "the others elect a new leader")
    finally:
        top.proc.send_signal(signal.SIGCONT)
    # It wakes up believing it leads epoch `epoch`; the newer pair wins.
    new = c.wait_leader(timeout=10)
    assert new == c.servers[1].uuid
    assert top.status()["role"] == "backup"
    assert events_named(top, "step_down")
