"""Client sessions of a keyed cluster on the virtual LAN, against a rogue
host: a capture of every frame crossing the switch while alice and bob
chat shows neither a message nor a password; every client datagram
captured and sent again from the rogue host is refused and counted, and
nothing is delivered twice; the rogue, with a session of its own and
alice's address spoofed, cannot speak as alice."""

import socket
import struct
import threading

from lancluster import wait_for
from sealing import Session, pk_from_text  # tests/integration
from test_lan_cluster import chat_ready
from test_security import keygen  # tests/integration
from test_sessions import sessions  # tests/integration

DATA_PORT = 45961
ETH_P_ALL = 0x0003


def udp_of(frame):
    """(src, sport, dst, dport, payload) of an IPv4/UDP Ethernet frame."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
    sport, dport = struct.unpack("!HH", frame[14 + ihl:18 + ihl])
    return src, sport, dst, dport, frame[14 + ihl + 8:]


def spoofed(src, sport, dst, dport, payload):
    """An IPv4/UDP packet from src:sport (not ours), for a raw socket."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + udp


class Capture:
    """Every frame crossing the switch, in a thread, until stop()."""

    def __init__(self, lan):
        self.sock = lan.switch.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                      socket.htons(ETH_P_ALL))
        self.sock.settimeout(0.1)
        self.frames = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.frames.append(self.sock.recv(65535))
            except socket.timeout:
                pass

    def stop(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()
        return self.frames


def test_a_rogue_host_should_neither_read_replay_nor_forge_client_sessions(
        lan_cluster, tmp_path):
    key = keygen(tmp_path / "cluster.key")
    c = lan_cluster(3, clients=3, extra=("--cluster-key", key)).start_all()
    lead_uuid = c.wait_leader(timeout=20)
    leader = next(s for s in c.servers if s.uuid == lead_uuid)
    known = str(tmp_path / "known")
    pw = {}
    for user in ("alice", "bob"):
        pw[user] = f"{user} horse battery staple"
        (tmp_path / user).write_text(pw[user] + "\n")
    cap = Capture(c.lan)
    try:
        alice = c.client(0, "alice", "--known-clusters", known,
                         "--password-file", str(tmp_path / "alice"))
        bob = c.client(1, "bob", "--known-clusters", known,
                       "--password-file", str(tmp_path / "bob"))
        chat_ready(alice, bob)
        secret = "the eagle lands at dawn"
        alice.say(f"/msg bob {secret}")
        assert bob.wait_event("message", **{"from": "alice"})["text"] == secret
        alice.say("/users")
        alice.wait_event("list")
    finally:
        frames = cap.stop()
    udp = [u for u in map(udp_of, frames) if u is not None]
    raw = b"".join(u[4] for u in udp)
    # The capture heard the chat, and nothing of it in clear.
    a_host, b_host = c.client_host(0), c.client_host(1)
    sent = [u for u in udp if u[0] == a_host.addr and u[2] == leader.host.addr
            and u[3] == DATA_PORT]
    assert len(sent) >= 3 and all(u[4][0] == 0xFF for u in sent), sent[:3]
    assert any(u[0] == leader.host.addr and u[2] == b_host.addr for u in udp)
    for clear in (secret.encode(), b"eagle", pw["alice"].encode(), pw["bob"].encode(),
                  b"horse battery"):
        assert clear not in raw, clear

    # 1. Replays from the rogue host of everything alice sent the leader.
    rogue = c.client_host(2)
    tx = rogue.socket()
    r0 = sessions(leader)
    for u in sent:
        tx.sendto(u[4], (leader.host.addr, DATA_PORT))

    def refused():
        r = sessions(leader)
        return r["replayed"] + r["too_old"] - r0["replayed"] - r0["too_old"]
    wait_for(lambda: refused() >= len(sent), 10, "every replay refused")

    # 2. Its own session, alice's name, alice's address spoofed.
    info = dict(f.split("=", 1) for f in
                tx_where(tx, leader).decode().split("@")[4:])
    me = Session(pk_from_text(info["pk"]))
    a_port = sent[0][1]
    r1 = sessions(leader)
    raw_tx = rogue.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for i in range(3):
        d = me.seal(f"msg@bob@forged by mallory@alice@cid={900 + i}".encode(),
                    int(info["epoch"]))
        raw_tx.sendto(spoofed(a_host.addr, a_port, leader.host.addr, DATA_PORT, d),
                      (leader.host.addr, 0))
    raw_tx.close()
    tx.close()
    # They arrived and opened (the rogue's session entered the table): only
    # the binding of alice to her own session key refuses them.
    wait_for(lambda: sessions(leader)["created"] > r1["created"], 10,
             "the spoofed datagrams opened in the rogue's session")
    # Alice still chats (her next datagram takes her address back), and bob
    # has exactly one message from her: no replay, no forgery delivered.
    alice.say("/msg bob after the attack")
    wait_for(lambda: [m["text"] for m in bob.messages() if m["from"] == "alice"]
             == [secret, "after the attack"], 15, "alice's second message, alone")
    assert all(m["text"] != "forged by mallory" for m in bob.messages())
    assert alice.finish() == 0 and bob.finish() == 0


def tx_where(sock, leader):
    sock.settimeout(5)
    sock.sendto(b"where@*@@mallory", (leader.host.addr, DATA_PORT))
    d, _ = sock.recvfrom(2000)
    assert d.startswith(b"leader@"), d
    return d
