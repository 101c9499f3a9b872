"""Issue 11: a malicious IMAP server gets a clear one-line error, and nothing stored changes.

A small asyncio IMAP server written here (implicit TLS with a test CA)
answers ``certmail inbox`` with a literal of many gigabytes, a response that
never ends, or a message that changes between FETCHes. Each run must end with
one ``certmail: error:`` line and exit code 3, no traceback, no STORE, COPY,
MOVE or EXPUNGE sent, nothing saved and nothing acknowledged. A server whose
certificate does not verify, or that offers no STARTTLS, never sees the password.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import one_line_error, run
from tests.fixtures.dovecot import make_test_ca

MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n"
    b"Message-ID: <1@example.org>\r\nCertmail-Notary: http://127.0.0.1:9/\r\n\r\nhi\r\n"
)
OTHER = MESSAGE.replace(b"Subject: hello", b"Subject: changed!")


class HostileImap:
    """An IMAP server on 127.0.0.1 that misbehaves as ``mode`` says."""

    def __init__(self, mode: str, tmp: Path) -> None:
        self.mode = mode
        self.commands: list[str] = []
        self.ca = make_test_ca(tmp / "pki")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.ca.cert, self.ca.key)
        self.ctx = ctx
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            tls = None if self.mode == "plain" else self.ctx
            self.server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=tls)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            w.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile ready\r\n")
            while line := await r.readline():
                text = line.decode(errors="replace").rstrip("\r\n")
                self.commands.append(text)
                tag, _, rest = text.partition(" ")
                if not await self._answer(w, tag, rest):
                    break
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def _answer(self, w: asyncio.StreamWriter, tag: str, rest: str) -> bool:
        cmd = rest.split(" ", 1)[0].upper()
        ok = f"{tag} OK done\r\n".encode()
        if cmd == "CAPABILITY":
            w.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + ok)
        elif cmd in ("LOGIN", "NOOP"):
            w.write(ok)
        elif cmd in ("EXAMINE", "SELECT"):
            if self.mode == "trickle":
                w.write(b"* OK ")
                while True:  # a line that never ends, a byte at a time
                    await asyncio.sleep(0.1)
                    w.write(b"x")
                    await w.drain()
            if self.mode == "endless":
                while True:  # untagged lines, never the tagged answer
                    w.write(b"* OK " + b"x" * 1000 + b"\r\n")
                    await w.drain()
            w.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* FLAGS (\\Seen)\r\n" + ok)
        elif cmd == "UID" and rest.upper().startswith("UID SEARCH"):
            w.write(b"* SEARCH 1\r\n" + ok)
        elif cmd == "UID" and rest.upper().startswith("UID FETCH"):
            w.write(self._fetch(rest) + ok)
        elif cmd == "LOGOUT":
            w.write(b"* BYE bye\r\n" + ok)
            return False
        else:
            w.write(f"{tag} BAD unknown\r\n".encode())
        return True

    def _fetch(self, rest: str) -> bytes:
        if "BODY.PEEK[HEADER]" in rest:
            head = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            size = len(MESSAGE)
            intro = f"* 1 FETCH (UID 1 RFC822.SIZE {size} BODY[HEADER] {{{len(head)}}}\r\n"
            return intro.encode() + head + b")\r\n"
        m = re.search(r"BODY\.PEEK\[\]<(\d+)\.(\d+)>", rest)
        if m:
            if self.mode == "huge":
                return f"* 1 FETCH (UID 1 BODY[]<0> {{{8 << 30}}}\r\n".encode() + b"x" * 4096
            body = OTHER if self.mode == "changing" else MESSAGE
            part = body[int(m.group(1)) : int(m.group(1)) + int(m.group(2))]
            return (
                f"* 1 FETCH (UID 1 BODY[]<{m.group(1)}> {{{len(part)}}}\r\n".encode()
                + part
                + b")\r\n"
            )
        return f"* 1 FETCH (UID 1 FLAGS () RFC822.SIZE {len(MESSAGE)})\r\n".encode()

    def stop(self) -> None:
        def close() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(close)
        self.thread.join(10)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Any]:
    servers: list[HostileImap] = []

    def make(mode: str) -> HostileImap:
        s = HostileImap(mode, tmp_path / mode)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def _env(srv: HostileImap, tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    return {
        "CERTMAIL_IMAP_PASSWORD_FILE": str(pw),
        "CERTMAIL_IMAP_CA": str(srv.ca.ca),
        "CERTMAIL_IMAP_TIMEOUT": "3" if srv.mode == "trickle" else "20",
    }


def _nothing_changed(srv: HostileImap, c: Any, save: Path) -> None:
    assert not any(
        re.match(r"\S+ (UID )?(STORE|COPY|MOVE|EXPUNGE|DELETE|APPEND)", x, re.I)
        for x in srv.commands
    ), srv.commands
    assert not save.exists() or not any(save.iterdir())
    assert not (c.bob.home / "ledger.db").exists()  # nothing acknowledged, nothing queued


@pytest.mark.parametrize(
    ("mode", "command", "said"),
    [
        ("huge", "open", "literal, more than"),
        ("changing", "open", "changed between FETCHes"),
        ("endless", "list", "never-ending response"),
    ],
)
def test_a_hostile_imap_server_gets_one_clear_line(
    correspondents: Any, hostile: Any, tmp_path: Path, mode: str, command: str, said: str
) -> None:
    c = correspondents
    srv = hostile(mode)
    save = tmp_path / "save"
    url = f"imaps://bob@127.0.0.1:{srv.port}/INBOX"
    args = ["open", "7.1", "--ack", "--save-dir", str(save)] if command == "open" else ["list"]
    p = run(c.bob, "inbox", *args, "--imap", url, **_env(srv, tmp_path))
    assert p.returncode == 3, p.stderr
    assert said in one_line_error(p)
    _nothing_changed(srv, c, save)


def test_an_unverified_certificate_or_no_starttls_is_refused(
    correspondents: Any, hostile: Any, tmp_path: Path
) -> None:
    c = correspondents
    srv = hostile("good")
    env = _env(srv, tmp_path)
    del env["CERTMAIL_IMAP_CA"]  # the system store does not know the test CA
    p = run(c.bob, "inbox", "list", "--imap", f"imaps://bob@127.0.0.1:{srv.port}/", **env)
    assert p.returncode == 3
    assert "certificate that does not verify" in one_line_error(p)
    assert "CERTMAIL_IMAP_CA" in p.stderr
    assert not any(x.split(" ")[1:2] == ["LOGIN"] for x in srv.commands)  # no password sent
    # The password never goes on the command line.
    p = run(c.bob, "inbox", "list", "--imap", f"imaps://bob:pw@127.0.0.1:{srv.port}/", **env)
    assert p.returncode == 1 and "never takes one on the command line" in one_line_error(p)
    # With the CA, the same server answers (the good mode lists its one message).
    p = run(
        c.bob,
        "inbox",
        "list",
        "--json",
        "--imap",
        f"imaps://bob@127.0.0.1:{srv.port}/",
        **_env(srv, tmp_path),
    )
    assert p.returncode == 0, p.stderr
    assert '"id": "7.1"' in p.stdout


def test_imap_without_starttls_is_refused_before_login(
    correspondents: Any, hostile: Any, tmp_path: Path
) -> None:
    srv = hostile("plain")  # no TLS, no STARTTLS capability
    url = f"imap://bob@127.0.0.1:{srv.port}/INBOX"
    p = run(correspondents.bob, "inbox", "list", "--imap", url, **_env(srv, tmp_path))
    assert p.returncode == 1
    assert "offers no STARTTLS" in one_line_error(p) and "imaps://" in p.stderr
    assert not any(" LOGIN " in x.upper() for x in srv.commands), srv.commands


def test_a_server_trickling_bytes_is_cut_off_at_the_deadline(
    correspondents: Any, hostile: Any, tmp_path: Path
) -> None:
    srv = hostile("trickle")
    url = f"imaps://bob@127.0.0.1:{srv.port}/INBOX"
    p = run(correspondents.bob, "inbox", "list", "--imap", url, **_env(srv, tmp_path))
    assert p.returncode == 5, p.stderr
    assert "did not answer in time" in one_line_error(p)
