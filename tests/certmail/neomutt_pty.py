"""Drive a real NeoMutt to send one draft, or to read one message, as a person would.

``python neomutt_pty.py RCFILE DRAFT OUT``: NeoMutt's batch mode applies no
crypto, so it runs on a pseudo-terminal with ``-H DRAFT``: Enter at the To:
and Subject: prompts, ``y`` at the compose screen. The rc file's ``sendmail``
writes the message to OUT. Exits 0 once OUT holds the message, 1 after 30 s.

``python neomutt_pty.py --read RCFILE MBOX OUT``: opens MBOX read-only, Enter on
its first message, and writes what the pager showed (terminal escapes removed)
to OUT a second after the end of the decrypted part is on the screen (the
signature's status line comes last). Exits 0 then, 1 after 30 s.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time


def main(rcfile: str, draft: str, out_path: str) -> int:
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp("neomutt", ["neomutt", "-n", "-F", rcfile, "-e", "set editor=true", "-H", draft])
    seen = b""
    steps = [(b"To: ", b"\r"), (b"Subject: ", b"\r"), (b"Security", b"y")]
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                seen += data
            if steps and steps[0][0] in seen:
                time.sleep(0.3)
                os.write(fd, steps.pop(0)[1])
                seen = b""
            if os.path.exists(out_path) and os.path.getsize(out_path) > 0:
                time.sleep(0.5)  # let sendmail finish writing
                return 0
        return 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def read(rcfile: str, mbox: str, out_path: str) -> int:
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="xterm", COLUMNS="200", LINES="60")
        os.execvp("neomutt", ["neomutt", "-n", "-F", rcfile, "-R", "-f", mbox])
    seen = b""
    opened = False
    shown = None  # when the end of the decrypted part was on the screen
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
            if not opened and b"Msgs:" in seen:
                time.sleep(0.3)
                os.write(fd, b"\r")
                opened = True
            if shown is None and opened and b"End of PGP/MIME" in seen:
                shown = time.monotonic()
            if shown is not None and time.monotonic() > shown + 1.0:  # the status line too
                break
        with open(out_path, "wb") as out:
            out.write(re.sub(rb"\x1b(\[[0-9;?]*[A-Za-z]|\([A-Z0-9])", b" ", seen))
        return 0 if shown is not None else 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    if sys.argv[1] == "--read":
        sys.exit(read(*sys.argv[2:5]))
    sys.exit(main(*sys.argv[1:4]))
