"""The virtual LAN itself (tools/ringlan.py): hosts reach each other by
broadcast and unicast and nothing else does; cut, split and loss do what
they say; nothing is left behind, even when the program that built the LAN
is killed with SIGKILL, and a user without root can build one."""

import os
import signal
import subprocess
import sys
import threading
import time

from lancluster import ROOT, wait_for

PORT = 5000

RX = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:  # room for a whole burst, however late this reader runs
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, src = s.recvfrom(2000)
    print(src[0], data.decode(), flush=True)
"""

TX = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
dest, port, tag, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for i in range(n):
    s.sendto(f"{tag}.{i}".encode(), (dest, port))
    if i % 10 == 9:
        time.sleep(0.001)  # paced: the receiver's buffer must not overflow
"""


class Listener:
    """A UDP receiver on one host; what it got, as (source, payload)."""

    def __init__(self, host):
        self.host = host
        self.got = []
        self.lock = threading.Lock()
        self.proc = host.popen([sys.executable, "-u", "-c", RX, str(PORT)],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(10), f"{host.name}: receiver did not start"

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode().strip()
            if line == "ready":
                self.ready.set()
                continue
            src, payload = line.split(" ", 1)
            with self.lock:
                self.got.append((src, payload))

    def tags(self):
        with self.lock:
            return {p.rsplit(".", 1)[0] for _, p in self.got}

    def count(self, tag):
        with self.lock:
            return sum(1 for _, p in self.got if p.rsplit(".", 1)[0] == tag)


def send(host, dest, tag, n=1):
    host.run([sys.executable, "-c", TX, dest, str(PORT), tag, str(n)])


def reach(lan, listeners, sender, tag, expect):
    """Broadcasts tag from sender; waits until exactly the expected hosts
    have it, then a while longer to see that no other host gets it."""
    send(lan[sender], lan[sender].bcast, tag)
    for i in expect:
        wait_for(lambda i=i: tag in listeners[i].tags(), 5, f"{tag} at h{i}")
    time.sleep(0.3)  # a datagram on a virtual LAN takes microseconds
    got = {i for i, li in listeners.items() if tag in li.tags()}
    assert got == set(expect), f"{tag}: reached {sorted(got)}, expected {sorted(expect)}"


def test_hosts_should_hear_broadcasts_and_unicasts_until_cut_or_split(lan_factory):
    lan = lan_factory(4)
    for h in lan.hosts:
        r = h.run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        assert f"inet {h.addr}/24 brd 10.77.0.255" in r.stdout.decode()
    listeners = {h.index: Listener(h) for h in lan.hosts}
    # The sender hears its own broadcast too (loopback of broadcasts).
    reach(lan, listeners, 1, "whole", [1, 2, 3, 4])
    send(lan[1], lan[3].addr, "uni")
    wait_for(lambda: "uni" in listeners[3].tags(), 5, "unicast to h3")
    assert listeners[3].got[-1][0] == lan[1].addr

    lan.cut(2)
    reach(lan, listeners, 1, "cut", [1, 3, 4])
    reach(lan, listeners, 2, "from-cut", [2])
    lan.reconnect(2)
    reach(lan, listeners, 2, "back", [1, 2, 3, 4])

    lan.split([1, 2], [3])  # h4, in no group, makes a group of its own
    assert lan.state() == "split: h1 h2 | h3 | h4"
    reach(lan, listeners, 1, "side-a", [1, 2])
    reach(lan, listeners, 3, "side-b", [3])
    reach(lan, listeners, 4, "side-c", [4])
    lan.heal()
    reach(lan, listeners, 3, "healed", [1, 2, 3, 4])


def test_loss_should_drop_about_the_given_share_each_way(lan_factory):
    lan = lan_factory(3)
    listeners = {i: Listener(lan[i]) for i in (2, 3)}
    # Neighbours known first: a lost ARP request would hold the stream in
    # the neighbour queue, which drops what does not fit, for a second.
    send(lan[1], lan[2].addr, "warm")
    send(lan[2], lan[3].addr, "warm")
    wait_for(lambda: listeners[2].count("warm") and listeners[3].count("warm"), 5, "ARP")
    n = 1000
    lan.loss(1, 30)     # h1's link: 30% out
    send(lan[1], lan[2].addr, "lossy", n)
    send(lan[3], lan[2].addr, "clean", n)
    wait_for(lambda: listeners[2].count("clean") == n, 10, "the clean stream")
    time.sleep(0.3)
    got = listeners[2].count("lossy")
    # 30% of 1000: 300 lost on average; 5 standard deviations is +-72.
    assert 628 <= got <= 772, f"{got} of {n} arrived through 30% loss"
    lan.loss(3, 30)     # h3's link: 30% in
    send(lan[2], lan[3].addr, "into-lossy", n)
    wait_for(lambda: listeners[3].count("into-lossy") >= 600, 10, "the lossy stream")
    time.sleep(0.3)
    got = listeners[3].count("into-lossy")
    assert 628 <= got <= 772, f"{got} of {n} arrived into 30% loss"
    lan.loss(1, 0)
    send(lan[1], lan[2].addr, "repaired", n)
    wait_for(lambda: listeners[2].count("repaired") == n, 10, "every datagram once loss is off")


def test_closing_should_remove_every_process_and_namespace(lan_factory):
    lan = lan_factory(3)
    lan[1].popen(["sh", "-c", "sleep 600 & sleep 600 & wait"])
    lan[2].popen(["sleep", "600"])
    holders = [h.pid for h in [lan.switch] + lan.hosts]
    wait_for(lambda: len(lan.processes()) >= len(holders) + 4, 5, "programs running")
    inside = lan.processes()
    lan.close()
    assert lan.leftovers() == []
    for pid in inside:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), pid


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


PARENT = r"""
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import ringlan
lan = ringlan.Lan(3)
d = tempfile.mkdtemp(prefix="ringlan-test-")
lan.remove_if_killed(d)
lan[1].popen(["sh", "-c", "sleep 600 & sleep 600 & wait"])
lan[2].popen(["sleep", "600"])
while len(lan.processes()) < 4 + 4:
    time.sleep(0.01)
print(d, " ".join(map(str, lan.processes())), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_parent_should_leave_nothing_behind(lan_factory):
    p = subprocess.Popen([sys.executable, "-c", PARENT, os.path.join(ROOT, "tools")],
                         stdout=subprocess.PIPE, start_new_session=True)
    try:
        line = p.stdout.readline().decode()
        d, pids = line.split()[0], [int(x) for x in line.split()[1:]]
        assert len(pids) >= 8, line  # 4 holders, sh and 2 sleeps, 1 sleep
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        p.stdout.close()
    # The grandchildren of sh carry no parent-death signal: the watchdog
    # kills them, and removes the directory; the holders go with the
    # kernel's signal.
    wait_for(lambda: all(not os.path.exists(f"/proc/{x}") or _zombie(x) for x in pids),
             10, "every process of the killed parent's LAN gone")
    wait_for(lambda: not os.path.exists(d), 10, "its temporary directory removed")


def _in_user_namespace():
    with open("/proc/self/uid_map") as f:
        return f.read().split() != ["0", "0", "4294967295"]


def test_a_user_without_root_should_build_the_lan_in_a_user_namespace(lan_factory):
    lan_cli = os.path.join(ROOT, "tools", "lan")
    if _in_user_namespace():
        # This whole run is the unprivileged case: `make lan-test` re-ran it
        # under `unshare -rn`.  The CLI's self-check must pass here as well.
        cmd = [sys.executable, lan_cli, "check", "--hosts", "3"]
    else:
        # Really root: check as nobody, through the CLI's own re-exec.
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               sys.executable, lan_cli, "check", "--hosts", "3"]
    r = subprocess.run(cmd, capture_output=True, timeout=60, cwd="/")
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out
    assert "ok" in out and "nothing left" in out, out


def test_a_socket_made_for_a_host_should_live_on_that_hosts_lan(lan_factory):
    lan = lan_factory(2)
    s = lan[2].socket()
    try:
        s.bind((lan[2].bcast, PORT))  # only that host has this broadcast address
        s.settimeout(5)
        send(lan[1], lan[1].bcast, "to-a-socket")
        data, src = s.recvfrom(100)
        assert data == b"to-a-socket.0" and src[0] == lan[1].addr
    finally:
        s.close()
