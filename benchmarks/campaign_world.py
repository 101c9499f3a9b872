"""The set-up the campaign benchmarks share: Alice's certmail home with her key and N
recipients (Sequoia keys, ten addresses each), a loopback recipient server and a real
``certmail notary serve`` relay delivering to it, and the CLI environment that sends
through it as Alice.

    with campaign_world("bc", n, sink) as w:
        ...  # certmail campaign ... with env=w.env, in w.work
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from certmail.config import load_settings
from keys.gpg import Keyring
from tests.fixtures.campaign import SqRecipients, kill_agent, make_sq_recipients
from tests.fixtures.cli import clean_env
from tests.fixtures.notary import NotaryProcess, relay_notary

__all__ = ["ALICE", "CampaignWorld", "SentDiscarder", "campaign_world"]

ALICE = "alice@example.org"


class Sink(Protocol):
    port: int

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class CampaignWorld:
    work: Path  # a fresh directory under /tmp
    home: Path  # Alice's certmail home
    gnupghome: Path  # hers, with her key and every recipient's certificate
    recipients: SqRecipients
    notary: NotaryProcess
    env: dict[str, str]  # the CLI's environment: Alice, her home, the notary and her token


@contextmanager
def campaign_world(prefix: str, n: int, sink: Sink) -> Iterator[CampaignWorld]:
    """A started world of ``n`` recipients delivering to ``sink`` (started here); on leaving,
    the notary, the sink and the gpg agent are stopped and, if nothing failed, the
    files removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home = work / "home"
    gh = Path(load_settings(home).gnupghome)
    gh.mkdir(parents=True, mode=0o700)
    Keyring(gh).generate_identity(ALICE, "Alice")
    rs = make_sq_recipients(n, gh)
    sink.start()
    notary, token, _ = relay_notary(work / "notary", sink.port, ALICE)
    try:
        env = clean_env(
            home, CERTMAIL_EMAIL=ALICE, CERTMAIL_NAME="Alice",
            CERTMAIL_NOTARY_URL=notary.url, CERTMAIL_NOTARY_TOKEN=token,
        )  # fmt: skip
        yield CampaignWorld(work, home, gh, rs, notary, env)
    finally:
        notary.stop()
        sink.stop()
        kill_agent(gh)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(rs.directory, ignore_errors=True)


class SentDiscarder:
    """Removes the sender's finished copies (``sent_dir/<sha256>.eml``: sent and notarized,
    nothing left to do with them in this run) every 2 s, counting their bytes.

    Only for ``--discard-sent``: 10,000 copies of a 7.1 MB message are 71 GB, more than
    this machine's free disk. A real sender keeps them (proofs are made from them)."""

    def __init__(self, sent_dir: Path) -> None:
        self.sent_dir, self.files, self.bytes = sent_dir, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sweep()

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self._sweep()

    def _sweep(self) -> None:
        for f in self.sent_dir.glob("*.eml"):
            with contextlib.suppress(FileNotFoundError):
                size = f.stat().st_size
                f.unlink()
                self.files, self.bytes = self.files + 1, self.bytes + size
