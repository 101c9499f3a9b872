"""Shared pytest fixtures, one plugin module per real component.

- tests/fixtures/gpg.py: short temporary GNUPGHOMEs, agent cache off.
- tests/fixtures/clamd.py: a private clamd on a unix socket with the EICAR
  signature database shipped in tests/data/clamav/.
- tests/fixtures/notary.py: a notary initialised in a temporary directory and
  served on loopback.
- tests/fixtures/smtp.py: aiosmtpd servers on 127.0.0.1 as recipients' MX.
- tests/fixtures/dns.py: an authoritative DNS server on 127.0.0.1 (MX tests).
- tests/fixtures/postfix.py, tests/fixtures/dovecot.py: private Postfix (the
  recipient's MX, Maildir and mbox) and Dovecot (IMAP, a test CA) instances.
- tests/fixtures/mdn.py: a sent message and the signed read receipt (RFC 8098) that
  came back for it.
"""

pytest_plugins = [
    "tests.fixtures.gpg",
    "tests.fixtures.clamd",
    "tests.fixtures.notary",
    "tests.fixtures.smtp",
    "tests.fixtures.dns",
    "tests.fixtures.postfix",
    "tests.fixtures.dovecot",
    "tests.fixtures.mdn",
]


import subprocess  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_gpg_agent_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``tmp_path``, stop every gpg-agent whose home lies under
    it (a GnuPG home a test made itself, e.g. for stock gpg or ``--gnupghome``): no
    agent outlives its test."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    root: Path = request.getfixturevalue("tmp_path")
    yield
    try:
        homes = [sock.parent for sock in root.rglob("S.gpg-agent")]
    except OSError:  # a tree a test's own processes are still changing
        homes = []
    for home in homes:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            timeout=30,
            check=False,
        )
