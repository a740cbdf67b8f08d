"""Interactive ringchat in a real terminal, driven through tmux: a message
arriving while a line is half typed is printed above the prompt, and the
typed line (text and cursor) survives intact; history recalls lines."""

import os
import subprocess
import uuid

import pytest

from cluster import RINGCHAT, wait_for
from test_client import Client

class Tmux:
    """A private tmux server (its own socket) running one pane."""

    def __init__(self, tmp):
        self.sock = f"ringchat-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # tmux does not always reap a pane's process promptly: the pane's
        # shell writes the exit status here instead.
        self.status_file = os.path.join(str(tmp), "exit-status")

    def run(self, *args):
        r = subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", *args],
                           capture_output=True, timeout=10)
        return r.stdout.decode(errors="replace")

    def start(self, cmd, cols, rows):
        # Keep the pane after the command exits, to read its last screen.
        self.run("new-session", "-d", "-s", "chat", "-x", str(cols), "-y",
                 str(rows), f"{cmd}; echo $? > {self.status_file}", ";",
                 "set-option", "-t", "chat", "remain-on-exit", "on")

    def exit_status(self):
        try:
            with open(self.status_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return int(text) if text.endswith("\n") else None

    def type(self, text):
        self.run("send-keys", "-t", "chat", "-l", text)

    def keys(self, *keys):
        self.run("send-keys", "-t", "chat", *keys)

    def lines(self, escapes=False):
        """The screen, wrapped rows joined, without trailing blank rows."""
        out = self.run("capture-pane", "-p", "-J", *(["-e"] if escapes else []),
                       "-t", "chat").split("\n")
        out = [line.rstrip() for line in out]
        while out and out[-1] == "":
            out.pop()
        return out

    def wait(self, pred, timeout, what):
        """The screen once pred(screen) holds."""
        def check():
            ls = self.lines()
            return ls if pred(ls) else None
        return wait_for(check, timeout, what, interval=0.05)

    def wait_last(self, text, timeout=10):
        return self.wait(lambda ls: bool(ls) and ls[-1] == text, timeout,
                         f"last screen line {text!r}")


    def kill(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"],
                       capture_output=True, timeout=10)


@pytest.mark.parametrize("cols,typed,fix", [
    (80, "hello wrld", "o"),
    # Longer than the terminal is wide: the line wraps onto a second row.
    (40, "a line long enough to wrap round this narrow terminal, with a wrd",
     "o"),
])
def test_a_half_typed_line_should_survive_an_incoming_message(cluster_factory, tmp_path,
                                                              cols, typed, fix):
    c = cluster_factory(1).start_all()
    c.wait_leader(timeout=15)
    bob = Client(c.disc_port, "bob")
    tm = Tmux(tmp_path)
    try:
        bob.wait_event("ready", timeout=15)
        tm.start(f"env -u NO_COLOR TERM=xterm-256color {RINGCHAT} --user alice "
                 f"--discovery-port {c.disc_port} --timeout 20", cols, 20)
        tm.wait_last("alice>", timeout=15)
        tm.type("/join #lobby")
        tm.keys("Enter")
        tm.wait(lambda ls: "joined #lobby" in ls, 10, "joined")
        tm.wait_last("#lobby>")
        bob.say("/join #lobby")
        bob.wait_event("joined")

        # Half a line, the cursor moved back into it (before "rld").
        tm.type(typed)
        tm.keys("Left", "Left", "Left")
        tm.wait_last(f"#lobby> {typed}")
        bob.say("incoming while you type")
        # Wait for the screen to settle: the message, then the prompt again.
        screen = tm.wait(lambda ls: any("<bob> incoming while you type" in x for x in ls)
                         and ls[-1].startswith("#lobby>"), 10, "the incoming message")
        # Printed above the prompt, which is drawn again, once, as it was.
        assert screen[-1] == f"#lobby> {typed}", screen
        assert "<bob> incoming while you type" in screen[-2], screen
        assert screen[-3] == "joined #lobby", screen
        assert sum(x.startswith("#lobby>") for x in screen) == 1, screen
        msg = screen[-2]
        assert msg.split()[0].count(":") == 2  # HH:MM:SS
        assert msg.split()[1] == "#lobby"
        # In colour: the room and the sender have their own.
        coloured = tm.lines(escapes=True)
        assert any("\x1b[" in x and "incoming while you type" in x for x in coloured)

        # The cursor is where it was: the fix lands inside the word.
        tm.type(fix)
        want = typed[:-3] + fix + typed[-3:]
        tm.wait_last(f"#lobby> {want}")
        tm.keys("Enter")
        got = bob.wait_event("message", **{"from": "alice"})
        assert got["text"] == want and got["to"] == "#lobby"
        tm.wait_last("#lobby>")

        # History: Up brings the line back; Enter sends it again.
        tm.keys("Up")
        tm.wait_last(f"#lobby> {want}")
        tm.keys("Enter")
        wait_for(lambda: len([m for m in bob.messages() if m["from"] == "alice"]) == 2,
                 10, "the line sent again from history")
        assert bob.messages()[-1]["text"] == want

        tm.type("/quit")
        tm.keys("Enter")
        wait_for(lambda: tm.exit_status() is not None, 15, "ringchat to exit")
        assert tm.exit_status() == 0
        assert "bye" in tm.lines()
        assert bob.finish() == 0
    finally:
        tm.kill()
        bob.kill()
