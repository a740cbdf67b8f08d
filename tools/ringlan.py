"""ringlan: a virtual LAN of Linux network namespaces, for tests and the demo.

    with Lan(5) as lan:                      # hosts 1..5 on 10.77.0.0/24
        p = lan[1].popen(["build/ringchatd", "--iface", "eth0", ...])
        lan.cut(1); lan.reconnect(1)         # unplug and plug host 1's cable
        lan.split([1, 2], [3, 4, 5]); lan.heal()
        lan.loss(3, 10)                      # 10% of host 3's frames lost, each way
        s = lan[4].socket()                  # a UDP socket of host 4, in this process

The layout is one switch namespace holding a bridge `br0`, and one namespace
per host.  Host i has `eth0` with 10.77.0.i/24 (broadcast 10.77.0.255) and
`lo`; its cable is a veth pair whose other end, `p<i>`, is a port of the
bridge.  Every veth is created inside the switch namespace and one end is
moved into the host, so nothing at all is created in the namespace this
module runs in: the machine's own interfaces are never touched and nothing
sent on the virtual LAN can leave it.

Why holder processes, not `ip netns add`: a namespace lives as long as a
process is in it (or a file holds it).  `ip netns add` keeps it alive with a
bind mount under /run/netns, which needs mount propagation that a user
namespace (`unshare -rn`, how this runs without root) does not allow.  Here
each namespace is created by its holder, `setpriv --pdeathsig KILL --
unshare --net -- sleep infinity`: one process whose network namespace is
new, which the kernel kills when its parent dies.  Everything is configured
with `nsenter -t HOLDER -n --preserve-credentials -- ip|nft ...`, and
programs started on a host carry the same parent-death signal.  Before each
command the holder is checked to still hold the namespace it made: were it
gone and its PID reused, nsenter would configure some other namespace,
perhaps the machine's own.

Cleanup, whatever happens:
  - close() (also on `with` exit, atexit, and SIGINT/SIGTERM in the CLI):
    every process in every namespace of the LAN is killed by PID, found by
    its /proc/PID/ns/net, and the holders last, so the namespaces vanish;
  - the parent SIGKILLed: the holders and the programs it started get
    SIGKILL from the kernel (PR_SET_PDEATHSIG); a watchdog process, which
    holds the namespaces open so their identity cannot be reused, sees its
    pipe from the parent close and kills anything else still inside (a
    program's own children) and removes the directories it was given
    (remove_if_killed), then exits, and the namespaces go with it.
The parent-death signal fires when the *thread* that started the process
ends: start holders and programs from a thread that outlives them (the
main thread).

Faults:
  - cut/reconnect and split/heal are nftables rules in the switch's bridge
    (family bridge, forward hook): frames between the ports concerned are
    dropped, broadcasts included, and the hosts see no carrier change;
  - loss is an nftables `numgen random` drop on the host's switch port, in
    and out (the cable, each way; a drop inside the host's own output hook
    would fail the sender's sendto with EPERM, which a real lossy link never
    does): a datagram between two lossy hosts crosses two cables, so at P%
    per cable it is lost with probability 1 - (1 - P/100)^2, and each copy
    of a broadcast is lost independently;
  - delay needs the netem queueing discipline; delay() says so plainly when
    the kernel lacks it (nftables cannot delay anything).

Requirements: root, or a user namespace (re-exec under `unshare -rn`, see
reexec_unprivileged()), and util-linux (unshare, nsenter, setpriv),
iproute2 and nftables.
"""

import atexit
import ctypes
import os
import signal
import socket as socketlib
import subprocess
import sys
import threading
import time

SUBNET = "10.77.0"
IFACE = "eth0"
MAX_HOSTS = 250
TOOLS = ("unshare", "nsenter", "setpriv", "ip", "nft")

# The watchdog: reads "holder-pid" lines, opens each holder's namespace
# (which keeps its identity from being reused while open), and "dir PATH"
# lines; on "clear" it just exits; on EOF without "clear" (the parent
# died) it kills every process still in one of those namespaces and
# removes those directories.
_WATCHDOG = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
fds, inos, dirs, clear = [], set(), [], False
for line in sys.stdin:
    line = line.strip()
    if line == "clear":
        clear = True
        break
    if line.startswith("dir "):
        dirs.append(line[4:])
        print("ok", flush=True)
        continue
    try:
        fd = os.open(f"/proc/{int(line)}/ns/net", os.O_RDONLY)
    except (OSError, ValueError):
        continue
    fds.append(fd)
    inos.add(os.fstat(fd).st_ino)
    print("ok", flush=True)
if not clear:
    me = os.getpid()
    for _ in range(50):
        left = 0
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino in inos:
                    os.kill(int(d), signal.SIGKILL)
                    left += 1
            except OSError:
                pass
        if not left:
            break
        import time; time.sleep(0.02)
    import shutil
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
"""


class LanError(RuntimeError):
    """The virtual LAN could not be built or changed."""


def _netns_ino(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def pids_in_netns(ino):
    """PIDs of the processes whose network namespace has inode ino."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and _netns_ino(d) == ino:
            out.append(int(d))
    return out


_CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise LanError(f"setns: {os.strerror(e)}")


def check_tools():
    """Raises LanError naming every missing program."""
    missing = [t for t in TOOLS if not any(
        os.access(os.path.join(p, t), os.X_OK)
        for p in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
        + ["/usr/sbin", "/sbin"])]
    if missing:
        raise LanError(f"missing programs: {', '.join(missing)} "
                       "(Debian: apt-get install util-linux iproute2 nftables)")


def reexec_unprivileged(argv=None):
    """Not root: run this program again inside `unshare -rn` (a user
    namespace where we are root, and an empty network namespace).  Returns
    only when already root; never loops."""
    if os.geteuid() == 0:
        return
    if os.environ.get("RINGLAN_REEXEC"):
        raise LanError("still not root inside `unshare -rn`: user namespaces "
                       "are disabled here (kernel.unprivileged_userns_clone or "
                       "user.max_user_namespaces); run as root")
    argv = list(argv if argv is not None else [sys.executable] + sys.argv)
    env = dict(os.environ, RINGLAN_REEXEC="1")
    try:
        os.execvpe("unshare", ["unshare", "-rn", "--"] + argv, env)
    except OSError as e:
        raise LanError(f"cannot run unshare -rn: {e}") from e


class Host:
    """One host: its own network namespace with eth0 and lo."""

    def __init__(self, lan, index):
        self.lan = lan
        self.index = index
        self.name = f"h{index}"
        self.addr = f"{lan.subnet}.{index}"
        self.bcast = f"{lan.subnet}.255"
        self.port = f"p{index}"       # its port on the switch
        self.holder = None            # Popen of the holder
        self.ino = None               # the namespace's inode

    @property
    def pid(self):
        return self.holder.pid

    def wrap(self, argv):
        """argv run in this host's namespace, killed if our thread dies.
        Refuses when the holder's PID no longer holds this namespace (it
        died, the PID was reused): nsenter would then configure some other
        namespace, perhaps the machine's own."""
        if self.ino is None or _netns_ino(self.pid) != self.ino:
            raise LanError(f"{self.name}: namespace holder {self.pid} is gone")
        return ["setpriv", "--pdeathsig", "KILL", "--",
                "nsenter", "-t", str(self.pid), "-n", "--preserve-credentials",
                "--"] + [str(a) for a in argv]

    def env(self, extra=None):
        env = dict(os.environ, RINGLAN_HOST=str(self.index), RINGLAN_NAME=self.name,
                   RINGLAN_ADDR=self.addr, RINGLAN_IFACE=IFACE)
        env.update(extra or {})
        return env

    def popen(self, argv, session=True, env=None, **kw):
        """Starts argv on this host; the Popen's pid is the program's own
        (setpriv and nsenter exec it).  session=True puts it in a session
        of its own, away from the terminal's Ctrl-C."""
        p = subprocess.Popen(self.wrap(argv), start_new_session=session,
                             env=self.env(env), **kw)
        self.lan._procs.append(p)
        return p

    def run(self, argv, check=True, timeout=30, **kw):
        """Runs argv on this host to completion (output captured)."""
        kw.setdefault("capture_output", True)
        r = subprocess.run(self.wrap(argv), timeout=timeout, env=self.env(), **kw)
        if check and r.returncode != 0:
            raise LanError(f"{self.name}: {' '.join(map(str, argv))}: exit "
                           f"{r.returncode}: {(r.stderr or b'').decode(errors='replace').strip()}")
        return r

    def socket(self, family=None, kind=None, proto=0):
        """A socket of this host, usable from this process: the calling
        thread enters the namespace just long enough to create it (setns
        changes only the calling thread's namespace).  On the switch, an
        AF_PACKET socket with proto ETH_P_ALL hears every frame crossing
        the bridge (a capture, as a rogue host on a hub would)."""
        family = socketlib.AF_INET if family is None else family
        kind = socketlib.SOCK_DGRAM if kind is None else kind
        mine = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        theirs = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
        try:
            if os.fstat(theirs).st_ino != self.ino:
                raise LanError(f"{self.name}: namespace holder {self.pid} is gone")
            _setns(theirs)
            try:
                return socketlib.socket(family, kind, proto)
            finally:
                _setns(mine)
        finally:
            os.close(theirs)
            os.close(mine)

    def processes(self):
        """PIDs in this namespace, the holder included."""
        return pids_in_netns(self.ino) if self.ino else []

    def __repr__(self):
        return f"<Host {self.name} {self.addr} holder {self.holder.pid if self.holder else None}>"


class Lan:
    """hosts: how many (1..250); addresses subnet.1 .. subnet.N."""

    def __init__(self, hosts, subnet=SUBNET):
        if not 1 <= hosts <= MAX_HOSTS:
            raise LanError(f"hosts must be 1..{MAX_HOSTS}")
        self.subnet = subnet
        self.hosts = [Host(self, i) for i in range(1, hosts + 1)]
        self.switch = Host(self, 0)
        self.switch.name = "switch"
        self._procs = []
        self._watchdog = None
        self._closed = False
        self._cut = set()
        self._groups = None
        self._loss = {}
        self._lock = threading.Lock()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        atexit.register(self.close)

    # -- building ------------------------------------------------------

    def __getitem__(self, i):
        """Host i, 1-based like its address."""
        if not 1 <= i <= len(self.hosts):
            raise IndexError(f"no host {i}: hosts are 1..{len(self.hosts)}")
        return self.hosts[i - 1]

    def __len__(self):
        return len(self.hosts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spawn_holder(self, h):
        h.holder = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--",
             "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)

    def _build(self):
        check_tools()
        if os.geteuid() != 0:
            raise LanError("network namespaces need root: run as root or under "
                           "`unshare -rn` (reexec_unprivileged() does it)")
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, text=True)
        here = _netns_ino("self")
        everyone = [self.switch] + self.hosts
        for h in everyone:
            self._spawn_holder(h)
        # Wait until each holder has left our namespace (unshare done).
        deadline = time.monotonic() + 10
        for h in everyone:
            while True:
                if h.holder.poll() is not None:
                    err = h.holder.stderr.read().decode(errors="replace").strip()
                    raise LanError(f"cannot create a network namespace: {err}")
                ino = _netns_ino(h.pid)
                if ino is not None and ino != here:
                    # setpriv -> unshare -> sleep: wait for sleep itself.
                    try:
                        with open(f"/proc/{h.pid}/comm") as f:
                            if f.read().strip() == "sleep":
                                h.ino = ino
                                break
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise LanError(f"{h.name}: namespace holder did not start")
                time.sleep(0.005)
            self._watchdog.stdin.write(f"{h.pid}\n")
            self._watchdog.stdin.flush()
            if self._watchdog.stdout.readline().strip() != "ok":
                raise LanError("the cleanup watchdog did not take the namespace")
        if len({h.ino for h in everyone}) != len(everyone):
            raise LanError("namespaces are not distinct")
        batch = ["link set lo up",
                 "link add br0 type bridge stp_state 0 forward_delay 0",
                 "link set br0 up"]
        for h in self.hosts:
            batch += [f"link add {h.port} type veth peer name {IFACE} netns {h.pid}",
                      f"link set {h.port} master br0",
                      f"link set {h.port} up"]
        self._ip_batch(self.switch, batch)
        for h in self.hosts:
            # No IPv6 chatter (router solicitations, DAD) on the test LAN.
            h.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                   "net.ipv6.conf.default.disable_ipv6=1"], check=False)
            self._ip_batch(h, ["link set lo up",
                               f"addr add {h.addr}/24 brd {h.bcast} dev {IFACE}",
                               f"link set {IFACE} up"])
        self._apply_switch_rules()

    def _ip_batch(self, h, lines):
        h.run(["ip", "-batch", "-"], input="\n".join(lines).encode() + b"\n")

    def _nft(self, h, text):
        h.run(["nft", "-f", "-"], input=text.encode())

    # -- faults --------------------------------------------------------

    def _apply_switch_rules(self):
        rules = []
        for i in sorted(self._cut):
            p = self[i].port
            rules += [f'iifname "{p}" drop', f'oifname "{p}" drop']
        if self._groups:
            for a in self._groups:
                for b in self._groups:
                    if a is b:
                        continue
                    ia = ", ".join(f'"{self[i].port}"' for i in sorted(a))
                    ib = ", ".join(f'"{self[i].port}"' for i in sorted(b))
                    rules.append(f"iifname {{ {ia} }} oifname {{ {ib} }} drop")
        for i, percent in sorted(self._loss.items()):
            per_mille = int(round(percent * 10))
            if per_mille:
                p = self[i].port
                rules += [f'iifname "{p}" numgen random mod 1000 < {per_mille} drop',
                          f'oifname "{p}" numgen random mod 1000 < {per_mille} drop']
        body = "\n".join(f"    {r}" for r in rules)
        self._nft(self.switch, f"""
table bridge ringlan
delete table bridge ringlan
table bridge ringlan {{
  chain forward_filter {{
    type filter hook forward priority 0; policy accept;
{body}
  }}
}}
""")

    def _hosts_arg(self, hs):
        out = set()
        for i in hs:
            self[i]  # noqa: B018 - validates
            out.add(i)
        return out

    def cut(self, i):
        """Unplugs host i: nothing from or to it crosses the switch."""
        with self._lock:
            self._cut.add(self[i].index)
            self._apply_switch_rules()

    def reconnect(self, i):
        with self._lock:
            self._cut.discard(self[i].index)
            self._apply_switch_rules()

    def split(self, *groups):
        """Partitions the LAN: hosts talk only within their group.  Hosts
        named in no group form one more group together."""
        with self._lock:
            sets = [self._hosts_arg(g) for g in groups]
            named = set().union(*sets) if sets else set()
            if sum(len(s) for s in sets) != len(named):
                raise LanError("a host is in two groups")
            rest = {h.index for h in self.hosts} - named
            if rest:
                sets.append(rest)
            self._groups = sets
            self._apply_switch_rules()

    def heal(self):
        """Ends a split (cut hosts stay cut)."""
        with self._lock:
            self._groups = None
            self._apply_switch_rules()

    def loss(self, i, percent):
        """Drops percent% (0..100, 0.1 steps) of the frames on host i's
        cable, each way, at random.  0 removes the loss."""
        h = self[i]
        if not 0 <= percent <= 100:
            raise LanError("percent must be 0..100")
        with self._lock:
            self._loss[h.index] = percent
            self._apply_switch_rules()

    def delay(self, i, ms):
        """Delays host i's outgoing frames by ms with netem, where the kernel
        has it; raises LanError saying so where it does not."""
        h = self[i]
        h.run(["tc", "qdisc", "del", "dev", IFACE, "root"], check=False)
        if ms <= 0:
            return
        r = h.run(["tc", "qdisc", "add", "dev", IFACE, "root", "netem", "delay",
                   f"{ms}ms"], check=False)
        if r.returncode != 0:
            raise LanError("delay needs the netem queueing discipline (sch_netem), "
                           "which this kernel does not have: "
                           + r.stderr.decode(errors="replace").strip())

    def remove_if_killed(self, path):
        """Has the watchdog remove directory path should this process die
        without closing the LAN (SIGKILL); removing it otherwise is the
        caller's business."""
        self._watchdog.stdin.write(f"dir {os.path.abspath(path)}\n")
        self._watchdog.stdin.flush()
        if self._watchdog.stdout.readline().strip() != "ok":
            raise LanError("the cleanup watchdog did not take the directory")

    def state(self):
        """What is currently done to the LAN, for people."""
        parts = []
        if self._cut:
            parts.append("cut: " + " ".join(f"h{i}" for i in sorted(self._cut)))
        if self._groups:
            parts.append("split: " + " | ".join(
                " ".join(f"h{i}" for i in sorted(g)) for g in self._groups))
        lossy = {i: p for i, p in self._loss.items() if p}
        if lossy:
            parts.append("loss: " + " ".join(f"h{i} {p}%" for i, p in sorted(lossy.items())))
        return "; ".join(parts) or "whole, no loss"

    # -- cleanup -------------------------------------------------------

    def processes(self):
        """Every PID inside the LAN's namespaces, holders included."""
        inos = {h.ino for h in [self.switch] + self.hosts if h.ino}
        if not inos:
            return []
        return [int(d) for d in os.listdir("/proc")
                if d.isdigit() and _netns_ino(d) in inos]

    def close(self):
        """Kills everything in the LAN and the holders; idempotent."""
        if self._closed:
            return
        self._closed = True
        holders = {h.holder.pid for h in [self.switch] + self.hosts if h.holder}
        # Programs first (so nothing restarts in them), then the holders.
        for _ in range(100):
            left = [p for p in self.processes() if p not in holders]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        for p in self._procs:
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for h in [self.switch] + self.hosts:
            if h.holder is not None and h.holder.poll() is None:
                h.holder.kill()
        for h in [self.switch] + self.hosts:
            if h.holder is not None:
                try:
                    h.holder.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                if h.holder.stderr:
                    h.holder.stderr.close()
        if self._watchdog is not None:
            try:
                self._watchdog.stdin.write("clear\n")
                self._watchdog.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait(timeout=5)
            self._watchdog.stdout.close()
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001 - interpreter shutting down
            pass

    def leftovers(self):
        """After close(): PIDs still in the LAN's namespaces (should be none)."""
        return self.processes()


def on_signals_exit():
    """SIGTERM and SIGHUP end the program like Ctrl-C does, so `with` blocks,
    finally clauses and atexit run and the namespaces are removed."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)
