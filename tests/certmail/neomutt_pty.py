"""Drive a real NeoMutt to send one draft, as a person at its compose screen would.

``python neomutt_pty.py RCFILE DRAFT OUT``: NeoMutt's batch mode applies no
crypto, so it runs on a pseudo-terminal with ``-H DRAFT``: Enter at the To:
and Subject: prompts, ``y`` at the compose screen. The rc file's ``sendmail``
writes the message to OUT. Exits 0 once OUT holds the message, 1 after 30 s.
"""

from __future__ import annotations

import os
import pty
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


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
