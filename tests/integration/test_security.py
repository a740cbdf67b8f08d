"""--cluster-key in the real ringchatd: servers with the same key form a
cluster; a process without it (or with another key) cannot claim the
leadership, vote, beat or replay what it captured; every refusal is
counted; a key file others can read is refused."""

import json
import os
import re
import socket
import subprocess
import time

from cluster import RINGCHATD, wait_for


def keygen(path):
    r = subprocess.run([RINGCHATD, "keygen", str(path)], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return str(path)


def refused(server):
    """The status line's counters of refused server datagrams."""
    rc, out, _ = server.ctl("status")
    assert rc == 0
    m = re.search(r"cluster key: \S+; refused: bad mac (\d+), no mac (\d+), "
                  r"malformed (\d+), replayed (\d+), too old (\d+)", out)
    assert m, out
    return dict(zip(("bad_mac", "no_mac", "malformed", "replayed", "too_old"),
                    map(int, m.groups())))


def replay_refusals(server):
    """Datagrams refused as replays: inside the window a counter seen before
    is "replayed"; counters start each wall-clock second at second << 20,
    so a copy from an earlier second than the sender's latest is "too old"."""
    r = refused(server)
    return r["replayed"] + r["too_old"]


def test_keygen_should_write_a_private_key_once(tmp_path):
    path = tmp_path / "cluster.key"
    r = subprocess.run([RINGCHATD, "keygen", str(path)], capture_output=True, timeout=10)
    assert r.returncode == 0
    assert "cluster fingerprint" in r.stdout.decode()
    assert os.stat(path).st_mode & 0o777 == 0o600
    before = path.read_bytes()
    r = subprocess.run([RINGCHATD, "keygen", str(path)], capture_output=True, timeout=10)
    assert r.returncode != 0 and "not overwritten" in r.stderr.decode()
    assert path.read_bytes() == before


def test_a_key_others_can_read_should_stop_the_server(cluster_factory, tmp_path):
    key = keygen(tmp_path / "k")
    os.chmod(key, 0o644)
    c = cluster_factory(1, extra=("--cluster-key", key))
    s = c.servers[0].start()
    assert s.proc.wait(timeout=10) != 0
    assert key in s.log_text()


def test_an_open_cluster_should_say_so_once(cluster_factory):
    c = cluster_factory(1).start_all()
    s = c.servers[0]
    wait_for(lambda: "cluster runs open" in s.log_text(), 5, "the warning")
    assert s.log_text().count("cluster runs open") == 1


def test_servers_without_the_key_should_change_nothing(cluster_factory, tmp_path):
    key = keygen(tmp_path / "k")
    other = keygen(tmp_path / "other")
    c = cluster_factory(4, extra=())
    keyed = c.servers[:3]
    for s in keyed:
        s.start(["--cluster-key", key])
    leader = wait_for(lambda: (lambda st: st[0]["leader"] if all(st) and
                               len({x["leader"] for x in st}) == 1 and
                               [x["role"] for x in st].count("leader") == 1
                               else None)([s.status() for s in keyed]),
                      15, "the keyed servers agree")
    assert leader == keyed[-1].uuid
    epoch = keyed[0].status()["epoch"]
    # The highest UUID of all, with another key: it may lead itself, never
    # the cluster.
    rogue = c.servers[3].start(["--cluster-key", other])
    wait_for(lambda: refused(keyed[0])["bad_mac"] > 0, 10, "its datagrams refused")
    # A process without any key speaks as a server: leader claims with a
    # huge epoch, votes, beats, news, from an unknown and a member's UUID.
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    fake = "ffffffff-ffff-4fff-bfff-ffffffffffff"
    lies = [
        f"leader@*@evil@{fake}@epoch=999999@leader={fake}@hop=1",
        f"leader@*@evil@{keyed[1].uuid}@epoch=999999@leader={keyed[1].uuid}@hop=1",
        f"voting@*@@{fake}@epoch=999999@cand={fake}@hop=1",
        f"beat@*@@{fake}@epoch=999999@seq=1",
        f"news@*@evil@{fake}@addr=127.0.0.1@port=1@cport=2@role=leader@epoch=999999",
    ]
    before = [refused(s)["no_mac"] for s in keyed]
    for s in keyed:
        for d in lies:
            tx.sendto(d.encode(), ("127.0.0.1", s.port + 1))
        tx.sendto(lies[-1].encode(), ("127.0.0.1", c.disc_port))
    tx.close()
    wait_for(lambda: all(refused(s)["no_mac"] >= b + len(lies)
                         for s, b in zip(keyed, before)),
             5, "every lie counted")
    time.sleep(0.3)  # nothing to wait for: nothing must happen
    for s in keyed:
        st = s.status()
        assert st["leader"] == leader and st["epoch"] == epoch
        assert fake not in json.dumps(st) and rogue.uuid not in json.dumps(st["ring"])
    assert rogue.alive()


def test_a_captured_server_datagram_should_be_refused_when_replayed(cluster_factory,
                                                                    tmp_path):
    key = keygen(tmp_path / "k")
    c = cluster_factory(2, extra=("--cluster-key", key))
    # A listener posing as a static peer: servers send it their (sealed)
    # announcements, as they would to any address in --peers.
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spy.bind(("127.0.0.1", 0))
    spy.settimeout(5)
    sport = spy.getsockname()[1]
    peers = {"version": 0, "epoch": 0, "leader": None, "servers": [
        {"uuid": "00000000-0000-4000-8000-000000000001", "name": "spy",
         "addr": "127.0.0.1", "port": sport - 1, "ctl_port": sport,
         "alive": True, "last_seen": None}]}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(peers))
    a, b = c.servers
    a.start(["--peers", str(path)])
    b.start()
    c.wait_leader(timeout=15)
    d, _ = spy.recvfrom(2000)
    spy.close()
    assert b"@mac=" in d and a.uuid.encode() in d
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r0 = refused(b)
    flipped = bytearray(d)
    flipped[d.index(b"@srv0@") + 4] ^= 1  # srv0 -> srv1: still decodes
    tx.sendto(bytes(flipped), ("127.0.0.1", b.port + 1))
    wait_for(lambda: refused(b)["bad_mac"] > r0["bad_mac"], 5, "the bit flip refused")
    # Sent twice: the second copy at the latest is refused (b never saw d,
    # which went to the spy, so a first copy within d's second is taken).
    r0 = replay_refusals(b)
    tx.sendto(d, ("127.0.0.1", b.port + 1))
    tx.sendto(d, ("127.0.0.1", b.port + 1))
    tx.close()
    wait_for(lambda: replay_refusals(b) > r0, 5, "the replay refused")
    assert c.agreed_leader() == b.uuid
