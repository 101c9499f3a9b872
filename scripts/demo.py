"""`make demo`: the whole registered flow, for real, on loopback.

Two identities (alice, bob) with their own keys; a notary with its log, TSA and
SMTP relay; a local mail server standing in for bob's MX; a private ClamAV
(test signature database) scanning the attachment. Alice sends a certified
message with an attachment through the relay; the notary witnesses acceptance
and delivery; bob opens it and signs an acknowledgement; alice reads the
receipt timeline, exports a proof bundle and verifies it offline. Everything
stays in ./demo-out for a look afterwards. It ends by printing the proof's path,
a one-time sign-in link to alice's view in a browser (``certmail web-login``)
and the verify page's URL; on a terminal the notary keeps running until Enter
or Ctrl-C, off one (tests, CI) it stops at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
CLAMAV_DB = ROOT / "tests" / "data" / "clamav"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str, env: dict[str, str] | None = None, show: bool = True) -> str:
    cmd = list(args) if args[0] in ("openssl", "gpg", "unzip") else [*CERTMAIL, *args]
    print("$ " + " ".join(("certmail", *args) if cmd[0] != args[0] else args), flush=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.stderr.strip():
        print(res.stderr.rstrip(), flush=True)
    if res.returncode != 0:
        print(res.stdout)
        sys.exit(f"demo: that step failed (exit {res.returncode})")
    if show and res.stdout.strip():
        print(res.stdout.rstrip(), flush=True)
    return res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mailbox:
    """bob's MX: an aiosmtpd server that stores each message's exact bytes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True)
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        data = envelope.original_content or b""
        (self.directory / f"{self.count:03d}.eml").write_bytes(data)
        return "250 2.0.0 stored in bob's mailbox"


def start_clamd(workdir: Path) -> tuple[subprocess.Popen[bytes], Path] | None:
    clamd = shutil.which("clamd") or "/usr/sbin/clamd"
    if not Path(clamd).exists():
        return None
    db = workdir / "db"
    db.mkdir(parents=True)
    for sig in CLAMAV_DB.iterdir():
        shutil.copy(sig, db / sig.name)
    sock = workdir / "clamd.sock"
    (workdir / "clamd.conf").write_text(
        f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {db}\n"
        f"LogFile {workdir / 'clamd.log'}\nTemporaryDirectory {workdir}\nSelfCheck 0\n"
    )
    proc = subprocess.Popen(
        [clamd, "-c", str(workdir / "clamd.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
                s.sendall(b"zPING\0")
                if s.recv(8).startswith(b"PONG"):
                    return proc, sock
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def keep_serving() -> None:
    """On a terminal, keep the notary up until Enter or Ctrl-C; off one (CI), stop now."""
    if not sys.stdin.isatty():
        return
    print("\nthe notary keeps running: press Enter (or Ctrl-C) to stop it", flush=True)
    try:
        input()
    except (KeyboardInterrupt, EOFError):
        print()


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    mx = None
    try:
        step("a private ClamAV with the test signature database (no downloads)")
        clam = start_clamd(OUT / "clamd")
        clamd_url = f"unix://{clam[1]}" if clam else ""
        if clam:
            procs.append(clam[0])
            print(f"clamd on {clam[1]}")
        else:
            print("no clamd here: attachments will be marked 'not scanned'")

        step("bob's mail server (the recipient's MX) on loopback")
        box = Mailbox(OUT / "bob-mailbox")
        mx_port = free_port()
        mx = Controller(box, hostname="127.0.0.1", port=mx_port)
        mx.start()
        print(f"listening on 127.0.0.1:{mx_port}, storing into {box.directory}")

        step("the notary: log, TSA and SMTP relay (delivering to bob's MX)")
        ndir = OUT / "notary"
        run("notary", "init", "--dir", str(ndir), "--origin", "notary.demo.test/log")
        token = (
            run("notary", "accounts", "add", "alice@example.test", "--dir", str(ndir), show=False)
            .strip()
            .splitlines()[-1]
        )
        http, smtp = free_port(), free_port()
        url = f"http://127.0.0.1:{http}"
        serve = [
            *CERTMAIL,
            "notary",
            "serve",
            "--dir",
            str(ndir),
            "--http",
            f"127.0.0.1:{http}",
            "--smtp",
            f"127.0.0.1:{smtp}",
            "--smarthost",
            f"127.0.0.1:{mx_port}",
        ]
        print("$ certmail " + " ".join(serve[3:]))
        procs.append(
            subprocess.Popen(
                serve, stdout=subprocess.DEVNULL, stderr=open(OUT / "notary.log", "wb")
            )
        )
        for _ in range(600):
            try:
                if httpx.get(url + "/v1/relay", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            sys.exit("demo: the notary did not start; see demo-out/notary.log")
        (OUT / "notary.vkey").write_text(httpx.get(url + "/v1/vkey").text)
        print(f"notary at {url}, relay at 127.0.0.1:{smtp}")

        step("two identities with their own OpenPGP keys")
        base = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
        alice = {
            **base,
            "CERTMAIL_HOME": str(OUT / "alice"),
            "CERTMAIL_NOTARY_URL": url,
            "CERTMAIL_NOTARY_TOKEN": token,
            "CERTMAIL_CLAMD": clamd_url,
        }
        bob = {**base, "CERTMAIL_HOME": str(OUT / "bob"), "CERTMAIL_CLAMD": clamd_url}
        if not clamd_url:
            alice.pop("CERTMAIL_CLAMD")
            bob.pop("CERTMAIL_CLAMD")
        run(
            "init", "--email", "alice@example.test", "--name", "Alice", "--no-passphrase", env=alice
        )
        run("init", "--email", "bob@example.test", "--name", "Bob", "--no-passphrase", env=bob)
        (OUT / "alice.asc").write_text(
            run("keys", "export", "alice@example.test", env=alice, show=False)
        )
        (OUT / "bob.asc").write_text(run("keys", "export", "bob@example.test", env=bob, show=False))
        run("keys", "import", str(OUT / "bob.asc"), env=alice)
        run("keys", "trust", "bob@example.test", "--yes", env=alice)
        run("keys", "import", str(OUT / "alice.asc"), env=bob)
        run("keys", "trust", "alice@example.test", "--yes", env=bob)

        step("alice sends a certified message with an attachment (through the relay)")
        (OUT / "contract.txt").write_text("Contract no. 42\nSigned by Alice, 21 Nov 2026.\n")
        (OUT / "body.txt").write_text("Bob,\n\nthe signed contract is attached.\n\nAlice\n")
        sent = json.loads(
            run(
                "send",
                "--to",
                "bob@example.test",
                "--subject",
                "Contract no. 42",
                "--body-file",
                str(OUT / "body.txt"),
                "--attach",
                str(OUT / "contract.txt"),
                "--json",
                env=alice,
                show=False,
            )
        )
        sha = sent["sha256"]
        print(f"sent via {sent.get('via')}: sha256 {sha}, Message-ID {sent['message_id']}")
        print(f"the relay answered: {sent.get('smtp_reply')}")
        print(f"{len(sent['receipts'])} receipt(s) kept in alice's ledger")

        step("the notary delivers to bob's server and logs it")
        run("receipts", sha, "--watch", "--interval", "0.2", "--timeout", "60", env=alice)
        delivered = sorted(box.directory.glob("*.eml"))
        print(f"bob's mailbox: {[p.name for p in delivered]}")

        step("bob opens it: decrypts, checks the signature and manifest, scans, saves, acks")
        run("open", str(delivered[0]), "--save-dir", str(OUT / "bob-saved"), "--ack", env=bob)

        step("alice's receipt timeline: accepted, delivered, acknowledged")
        run("receipts", sha, env=alice)

        step("a proof bundle, exported and verified offline against the pinned key")
        proof = OUT / "contract.certmail-proof.zip"
        run("proof", "export", sha, "-o", str(proof), env=alice)
        # --allow-partial: the sender's signature is inside the encryption, a check a
        # third party cannot run (the report says "valid, but 1 check could not run")
        run(
            "proof",
            "verify",
            str(proof),
            "--vkey",
            str(OUT / "notary.vkey"),
            "--tsa-root",
            str(ndir / "tsa" / "root-ca.pem"),
            "--allow-partial",
            env=alice,
        )
        print(f"\nproof: {proof}")

        step("in a browser: alice's certified mail, and the verify page")
        link = run("web-login", env=alice, show=False).strip()
        print(f"sender's view: {link}")
        print(f"verify page:   {url}/verify  (drop {proof.name} on it: nothing is uploaded)")
        print(f"public log:    {url}/log")
        keep_serving()
    finally:
        if mx is not None:
            mx.stop()
        # gpg starts an agent per home on first use; stop them so nothing outlives the demo.
        for who in ("alice", "bob"):
            gnupghome = OUT / who / "gnupg"
            if gnupghome.is_dir():
                subprocess.run(
                    ["gpgconf", "--homedir", str(gnupghome), "--kill", "all"],
                    check=False,
                    capture_output=True,
                )
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
