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
"""

pytest_plugins = [
    "tests.fixtures.gpg",
    "tests.fixtures.clamd",
    "tests.fixtures.notary",
    "tests.fixtures.smtp",
    "tests.fixtures.dns",
    "tests.fixtures.postfix",
    "tests.fixtures.dovecot",
]
