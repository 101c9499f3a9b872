"""Helpers for the relay tests: a real notary serving --smtp, submissions, receipts."""

from __future__ import annotations

import base64
import hashlib
import json
import smtplib
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from certmail.relay_client import submit
from tests.fixtures.mx import MxHosts
from tests.fixtures.notary import NotaryProcess, configure, free_port, relay_args

ALICE = "alice@a.test"
BOB = "bob@b.test"
#: One client for the receipt polls (httpx.get builds an SSL context per call).
_HTTP = httpx.Client(timeout=10)


class RelayNotary:
    """A notary subprocess running the relay, delivering through ``smarthost_port``."""

    def __init__(self, directory: Path, smarthost_port: int) -> None:
        self.proc = NotaryProcess(directory)
        self.smtp_port = free_port()
        self.smarthost_port = smarthost_port
        self.token = self.proc.token_for(ALICE)

    @property
    def url(self) -> str:
        return self.proc.url

    def start(self) -> None:
        self.proc.start(relay_args(self.smtp_port, self.smarthost_port))

    def connect(self, *, tls: bool = True) -> smtplib.SMTP:
        s = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)
        s.ehlo()
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo()
        return s

    def _get(self, sha256: str, what: str) -> list[dict[str, Any]]:
        """``GET /v1/messages/{sha256}/{what}`` as Alice: its list (none while unknown)."""
        r = _HTTP.get(
            f"{self.url}/v1/messages/{sha256}/{what}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if r.status_code == 404:
            return []
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()[what]
        return out

    def receipts(self, sha256: str) -> list[dict[str, Any]]:
        return self._get(sha256, "receipts")

    def events(self, sha256: str) -> list[dict[str, Any]]:
        return [json.loads(base64.b64decode(x["entry"])) for x in self.receipts(sha256)]

    def deliveries(self, sha256: str) -> list[dict[str, Any]]:
        """The relay's delivery state of ``sha256`` (``GET /v1/messages/{sha}/deliveries``)."""
        return self._get(sha256, "deliveries")

    def wait_deferred(self, sha256: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until a delivery of ``sha256`` has a failed attempt recorded (deferred)."""
        deadline = time.monotonic() + timeout
        while True:
            for d in self.deliveries(sha256):
                if d["attempts"] >= 1 and d["state"] == "queued" and d.get("last_error"):
                    return d
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no deferred delivery for {sha256}: {self.deliveries(sha256)}"
                )
            time.sleep(0.05)

    def wait_events(self, sha256: str, want: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll the receipts until one has event ``want`` (generous: not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events(sha256)
            if any(e["event"] == want for e in ev):
                return ev
            if time.monotonic() > deadline:
                raise AssertionError(f"no {want} for {sha256}; have {[e['event'] for e in ev]}")
            time.sleep(0.05)


class MxWorld(MxHosts):
    """A notary relay delivering by MX lookup to :class:`~tests.fixtures.mx.MxHosts`
    (one port, a loopback address per mail server), retrying a deferral after 0.2 s."""

    def __init__(self, directory: Path, tmp: Path) -> None:
        super().__init__(tmp)
        configure(directory, relay_retry_initial=0.2, **self.config)
        self.relay = RelayNotary(directory, 0)

    def start(self) -> None:
        self.relay.start()

    def submit(
        self, mid: str, recipients: list[str], *, sender: str = ALICE, token: str | None = None
    ) -> str:
        """Submit :func:`message` ``mid`` from ``sender`` to ``recipients`` (its To: names
        them) through the relay with ``token`` (Alice's unless given): its SHA-256."""
        return submit(
            message(mid, sender=sender, to=", ".join(recipients)),
            mail_from=sender,
            recipients=recipients,
            notary_url=self.relay.url,
            token=token or self.relay.token,
        )

    def stop(self) -> None:
        self.relay.proc.stop()
        super().stop()


def message(
    mid: str, *, sender: str = ALICE, to: str = BOB, body: str = "hello", extra: str = ""
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: test\r\nMessage-ID: <{mid}@a.test>\r\n"
        f"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n{extra}\r\n{body}\r\n"
    ).encode()


def submit_accepted(s: smtplib.SMTP, data: bytes) -> None:
    """Submit ``data`` from Alice to Bob in the session ``s``: the relay must answer 250
    naming the SHA-256 of exactly these bytes."""
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.data(data)
    assert code == 250, text
    assert text.decode().endswith(f"sha256={hashlib.sha256(data).hexdigest()}")


def delivered_as_submitted(sink: Any, data: bytes) -> None:
    """The sink's one message is ``data`` byte for byte behind the relay's trace field."""
    (got,) = sink.messages
    assert got.data.endswith(data) and got.data[: -len(data)].startswith(b"Received: ")


def wait_for(pred: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def gpg(*args: str, data: bytes) -> bytes:
    """Run gpg in a throwaway home (passphrase from a file, never argv); its stdout."""
    with tempfile.TemporaryDirectory(prefix="g", dir="/tmp") as home:
        pw = Path(home) / "pw"
        pw.write_text("test passphrase\n")
        out = subprocess.run(
            [
                "gpg",
                "--homedir",
                home,
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase-file",
                str(pw),
                *args,
            ],
            input=data,
            capture_output=True,
            check=True,
            timeout=60,
        )
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        return out.stdout
