"""The benchmark programs against the real binaries: loadgen speaks the
relay's protocol end to end and checks its own counts; forwarder passes
every datagram on."""

import json
import os
import signal
import subprocess
import sys

from cluster import BUILD, free_ports

LOADGEN = os.path.join(BUILD, "tools", "loadgen")
FORWARDER = os.path.join(BUILD, "tools", "forwarder")
BENCH_FAILOVER = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "bench_failover")


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


def _lan_leftovers():
    """ringchatd, ringchat or loadgen processes of a finished bench_failover
    --lan run: their private binary copy is gone."""
    left = []
    for d in os.listdir("/proc"):
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            continue
        if "ringchat-bench-lan-" in exe and exe.endswith(" (deleted)"):
            left.append(int(d))
    return left


def test_bench_failover_lan_should_measure_client_recovery_and_a_loaded_soak(tmp_path):
    """One kill on a virtual LAN of 3 servers and a client host, then a short
    soak with loadgen driving the leader through the client host, at 1% loss
    (the tool runs itself under `unshare -rn` when not root)."""
    out = tmp_path / "lan.json"
    r = subprocess.run([sys.executable, BENCH_FAILOVER, "--lan", "--servers", "3", "--kills", "1",
                        "--settle", "0.2", "--loss", "1", "--soak", "2", "--load", "--rate", "200",
                        "--json", str(out)],
                       capture_output=True, timeout=150, env=dict(os.environ, RINGCHAT_BUILD=BUILD))
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    d = json.loads(out.read_text())
    assert d["lan"] and d["servers"] == 3 and d["loss_percent"] == 1.0
    assert len(d["detection_ms"]) == len(d["agreement_ms"]) == len(d["recovery_ms"]) == 1
    assert d["no_agreement"] == 0 and d["no_recovery"] == 0
    # The clients only hear of the new leader after the servers agree on it.
    assert 0 < d["detection_ms"][0] <= d["agreement_ms"][0] < d["recovery_ms"][0]
    assert set(d["summary"]["recovery_ms"]) == {"n", "p50", "p95", "p99", "max"}
    assert d["load_enabled"] and d["load"]["acked"] > 0 and d["load"]["zero_loss"]
    for k in ("false_failovers", "elections", "suspicions", "members_down", "epoch_changes"):
        assert isinstance(d[k], int), k
    assert "recovery" in r.stdout.decode() and "false failovers" in r.stdout.decode()
    assert not _lan_leftovers()
