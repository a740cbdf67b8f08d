"""A keyed cluster (--cluster-key) on the virtual LAN against a rogue host
without the key: its own ringchatd with the highest UUID and another key,
leader claims with a huge epoch, votes, beats, news, and replays of the
servers' own broadcasts captured on the LAN.  Nothing changes the leader,
the epoch or the ring; every attempt is counted; chat goes on."""

import json
import socket
import subprocess
import time
import uuid as uuidlib

from lancluster import RINGCHATD, wait_for
from test_lan_cluster import chat_ready, join
from test_security import keygen, refused, replay_refusals  # tests/integration

CTL_PORT, DISC_PORT = 45962, 45960


def test_a_rogue_host_without_the_key_should_change_nothing(lan_cluster, tmp_path):
    key = keygen(tmp_path / "cluster.key")
    other = keygen(tmp_path / "rogue.key")
    # Servers on hosts 1-3, a client on host 4, the rogue on host 5.
    c = lan_cluster(3, clients=2, extra=("--cluster-key", key)).start_all()
    assert c.wait_leader(timeout=20) == c.servers[-1].uuid
    rogue_host = c.lan[5]
    # The rogue host listens to the LAN's broadcasts: an election's result
    # is broadcast, sealed, by the new leader.
    spy = rogue_host.socket()
    spy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    spy.bind(("0.0.0.0", DISC_PORT))
    spy.settimeout(5)
    c.servers[0].stdin("vote")
    captured = None
    deadline = time.monotonic() + 10
    while captured is None and time.monotonic() < deadline:
        d, _ = spy.recvfrom(2000)
        if d.startswith(b"leader@*@") and b"@mac=" in d:
            captured = d
    assert captured is not None, "no sealed leader broadcast heard on the LAN"
    leader = c.wait_leader(timeout=20)
    assert leader == c.servers[-1].uuid
    epoch = c.servers[0].status()["epoch"]
    # 1. A real ringchatd with another key and a UUID above everyone's.
    top = "ffffffff-ffff-4fff-bfff-" + uuidlib.uuid4().hex[:12]
    log = open(tmp_path / "rogue.log", "ab")
    rogue = rogue_host.popen([RINGCHATD, "--iface", "eth0", "--name", "rogue",
                              "--uuid", top, "--state-dir", str(tmp_path / "rogue"),
                              "--cluster-key", other, "--no-stdin"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for(lambda: all(refused(s)["bad_mac"] > 0 for s in c.servers), 10,
                 "the rogue server refused by every server")
        # 2. Plain lies to every server's control port and to the broadcast.
        tx = rogue_host.socket()
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        lies = [
            f"leader@*@evil@{top}@epoch=999999@leader={top}@hop=1",
            f"leader@*@evil@{c.servers[0].uuid}@epoch=999999@leader={c.servers[0].uuid}@hop=1",
            f"voting@*@@{top}@epoch=999999@cand={top}@hop=1",
            f"beat@*@@{leader}@epoch=999999@seq=1",
            f"news@*@evil@{top}@addr=10.77.0.5@port=45961@cport=45962@role=leader@epoch=999999",
        ]
        before = [refused(s)["no_mac"] for s in c.servers]
        for s in c.servers:
            for d in lies:
                tx.sendto(d.encode(), (s.host.addr, CTL_PORT))
        tx.sendto(lies[-1].encode(), ("10.77.0.255", DISC_PORT))
        wait_for(lambda: all(refused(s)["no_mac"] >= b + len(lies)
                             for s, b in zip(c.servers, before)),
                 10, "every lie counted")
        # 3. Replays of the captured broadcast, twice to each control port.
        # Servers ignore a leader broadcast on the discovery port, so none
        # recorded its counter: a first copy within its second is taken
        # (it says what the leader said), the second is refused.
        before = [replay_refusals(s) for s in c.servers]
        for _ in range(2):
            for s in c.servers:
                tx.sendto(captured, (s.host.addr, CTL_PORT))
        wait_for(lambda: all(replay_refusals(s) >= b + 1
                             for s, b in zip(c.servers, before)),
                 10, "the replays refused")
        tx.close()
        time.sleep(0.5)  # nothing to wait for: nothing must happen
        for s in c.servers:
            st = s.status()
            assert (st["leader"], st["epoch"]) == (leader, epoch), st
            ring = json.dumps(st["ring"])
            assert top not in ring
        assert c.agreed_leader() == leader
        # Chat goes on through the keyed cluster.
        pw = tmp_path / "pw"
        pw.write_text("a password of the keyed cluster\n")
        alice, bob = (c.client(0, u, "--password-file", str(pw)) for u in ("alice", "bob"))
        chat_ready(alice, bob)
        join("#safe", alice, bob)
        alice.say("still here")
        assert bob.wait_event("message", **{"from": "alice"})["text"] == "still here"
        assert alice.finish() == 0 and bob.finish() == 0
    finally:
        spy.close()
        rogue.kill()
        rogue.wait(timeout=10)
        log.close()
