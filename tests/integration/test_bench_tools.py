"""The benchmark programs against the real binaries: loadgen speaks the
relay's protocol end to end and checks its own counts; forwarder passes
every datagram on."""

import json
import os
import signal
import subprocess

from cluster import BUILD, free_ports

LOADGEN = os.path.join(BUILD, "tools", "loadgen")
FORWARDER = os.path.join(BUILD, "tools", "forwarder")


def loadgen(*args):
    r = subprocess.run([LOADGEN, *args], capture_output=True, timeout=60)
    line = r.stdout.decode().strip().splitlines()[-1]
    return r.returncode, json.loads(line)


def leader_of(c):
    return c.by_uuid(c.wait_leader(timeout=15))


def test_loadgen_should_see_every_message_delivered_exactly_once(cluster_factory):
    c = cluster_factory(3).start_all()
    leader = leader_of(c)
    port = leader.port
    for mode, extra in (("direct", []), ("room", ["--room-size", "5"]),
                        ("bcast", ["--senders", "3", "--window", "1"])):
        rc, r = loadgen("--server", f"127.0.0.1:{port}", "--mode", mode, "--users", "20",
                        "--rate", "200", "--duration", "1", "--warmup", "0",
                        "--prefix", f"t{mode[0]}", *extra)
        assert rc == 0, r
        assert r["zero_loss"] and r["unacked"] == 0 and r["acked"] > 0
        assert r["delivered"] == r["expected"] and r["lost"] == 0
        assert r["latency_us"]["n"] == r["delivered"]
    # Every session was logged out at the end.
    assert "0 online" in leader.ctl("users")[1].splitlines()[0]


def test_forwarder_should_pass_every_datagram_to_the_sink():
    listen, sink = free_ports(2)
    fwd = subprocess.Popen([FORWARDER, "--listen", f"127.0.0.1:{listen}",
                            "--to", f"127.0.0.1:{sink}"], stdout=subprocess.PIPE)
    try:
        fwd.stdout.readline()  # it is listening
        rc, r = loadgen("--server", f"127.0.0.1:{listen}", "--sink", f"127.0.0.1:{sink}",
                        "--mode", "raw", "--users", "10", "--rate", "1000",
                        "--duration", "0.5", "--warmup", "0")
        assert rc == 0, r
        assert r["delivered"] == r["sent"] > 0
    finally:
        fwd.send_signal(signal.SIGTERM)
        out, _ = fwd.communicate(timeout=10)
    assert f"{r['sent']} datagrams in, {r['sent']} out" in out.decode()
