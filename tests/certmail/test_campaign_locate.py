"""``campaign create`` looks up missing keys as ``certmail keys locate`` does (issue 15).

The real lookup against a real HTTPS Web Key Directory on loopback (a test CA in
``CERTMAIL_KEYS_CA``, ``openpgpkey.example.test`` reached through
``CERTMAIL_WKD_HOST_OVERRIDE``, as tests/certmail/test_locate.py), ``certmail notary
serve`` for the pickups, and an aiosmtpd server for the recipients' mail (``--via
smtp``). A key found is imported untrusted: it goes by pickup link (or its row is
refused, with the way to trust it) until ``certmail keys trust``; then the same
campaign encrypts to it, without asking the network again.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from certmail.locate.wkd import wkd_hash
from keys.gpg import Keyring
from tests.certmail.keyservers import KeyServer, wkd_tls
from tests.fixtures.campaign import write_csv
from tests.fixtures.relay import Relay, as_sender, start_relay

BOB = "bob@example.test"  # his domain's WKD has his key
NOKEY = "nokey@example.net"  # a special-use domain: no WKD asked, no key anywhere
ADV = f"/.well-known/openpgpkey/example.test/hu/{wkd_hash('bob')}?l=bob"


@pytest.fixture
def relay(tmp_path: Path, correspondents: Any) -> Iterator[Relay]:
    r = start_relay(tmp_path / "notary", correspondents)
    yield r
    r.stop()


@dataclass
class Setup:
    c: Any
    args: list[str]
    env: dict[str, str]
    bob_home: Path
    bob_fpr: str
    relay: Relay

    def cli(self, *a: str) -> subprocess.CompletedProcess[str]:
        return as_sender(self.c, self.relay, *a, **self.env)


@pytest.fixture
def wkd(
    correspondents: Any,
    relay: Relay,
    tmp_path: Path,
    keyring_factory: Callable[[str, str], tuple[Keyring, str]],
) -> Iterator[tuple[Setup, KeyServer]]:
    """Alice, the relay, Bob's key in his domain's WKD, a CSV of three: a recipient
    whose key Alice has, Bob (example.test, in the WKD) and one without a key anywhere."""
    c = correspondents
    bob_kr, bob_fpr = keyring_factory(BOB, "Bob")
    bob_key = subprocess.run(
        ["gpg", "--homedir", str(bob_kr.gnupghome), "--batch", "--export", bob_fpr],
        capture_output=True,
        check=True,
    ).stdout
    rows = [{"email": e, "name": "x"} for e in (c.bob.email, BOB, NOKEY)]
    csv_path = write_csv(tmp_path / "r.csv", rows)
    body = tmp_path / "body.txt"
    body.write_text("Dear {{ name }},\nthe rent changes in March.\n", encoding="utf-8")
    args = ["--recipients", str(csv_path), "--subject", "Notice", "--body-file", str(body)]
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({ADV: (200, bob_key)}, tls) as srv:
        env = {
            "CERTMAIL_SMTP_URL": c.sink.url,
            "CERTMAIL_KEYS_CA": str(ca),
            "CERTMAIL_WKD_HOST_OVERRIDE": f"openpgpkey.example.test={srv.address}",
        }
        yield Setup(c, [*args, "--via", "smtp"], env, Path(bob_kr.gnupghome), bob_fpr, relay), srv


def test_create_looks_missing_keys_up_imports_them_untrusted_and_lists_them(
    wkd: tuple[Setup, KeyServer],
) -> None:
    s, srv = wkd
    # --no-locate: the keyring only, as before
    p = s.cli("campaign", "create", "n0", *s.args, "--no-locate", "--pickup-if-no-key", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["located"] == [] and srv.hits == []

    # Looked up, found in the WKD, imported untrusted: by pickup link, and listed.
    p = s.cli("campaign", "create", "c1", *s.args, "--pickup-if-no-key", "--json")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert made["pickup"] == [BOB, NOKEY]
    [found] = made["located"]
    assert (found["addr"], found["fingerprints"], found["source"]) == (BOB, [s.bob_fpr], "wkd")
    assert (found["label"], found["trusted"], found["used"]) == ("domain-verified", False, False)
    assert srv.hits == [ADV]
    key = Keyring(s.c.alice.keyring.gnupghome).key_for(BOB)
    assert key.fingerprint == s.bob_fpr and key.validity not in ("full", "ultimate")


def test_a_located_key_refused_until_trusted_then_the_campaign_encrypts_to_it(
    wkd: tuple[Setup, KeyServer],
) -> None:
    s, srv = wkd
    c = s.c
    # Without --pickup-if-no-key the row is refused, with the key found and the way on.
    p = s.cli("campaign", "create", "c0", *s.args)
    assert p.returncode == 2
    assert f"row 3: no usable key for {BOB}: found {s.bob_fpr} in the Web Key" in p.stderr
    assert "domain-verified); imported, not trusted" in p.stderr
    assert f"hint: check the fingerprint with {BOB}, then certmail keys trust {BOB}" in p.stderr
    assert f"row 4: no usable key for {NOKEY}" in p.stderr
    assert f"(looked up: no key found for {NOKEY} (wkd not asked: special-use domain" in p.stderr
    assert srv.hits == [ADV]

    # Trusted (after checking the fingerprint): encrypted to it, the network not asked again.
    t = s.cli("keys", "trust", BOB, "--yes")
    assert t.returncode == 0, t.stderr
    p = s.cli("campaign", "create", "c3", *s.args, "--pickup-if-no-key", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["pickup"] == [NOKEY]
    sent = s.cli("campaign", "send", "c3", "--json")
    assert sent.returncode == 0, sent.stderr
    assert srv.hits == [ADV]
    by_rcpt = {m.rcpt_tos[0]: m.data.decode("utf-8", "replace") for m in c.sink.messages}
    assert sorted(by_rcpt) == sorted([c.bob.email, BOB, NOKEY])
    assert "multipart/encrypted" in by_rcpt[BOB]
    assert "multipart/encrypted" not in by_rcpt[NOKEY]
    # encrypted to Bob's located key (its encryption subkey's id in a PKESK packet)
    packets = subprocess.run(
        ["gpg", "--homedir", str(c.alice.keyring.gnupghome), "--batch", "--list-packets",
         "--list-only"],
        input=_pgp_part(by_rcpt[BOB]),
        capture_output=True,
        check=False,
    )  # fmt: skip
    keyids = re.findall(r"pubkey enc packet: version \d+, algo \d+, keyid ([0-9A-F]{16})",
                        (packets.stdout + packets.stderr).decode())  # fmt: skip
    assert _encryption_subkey(s.bob_home) in keyids, keyids


def _pgp_part(mail: str) -> bytes:
    start = mail.index("-----BEGIN PGP MESSAGE-----")
    end = mail.index("-----END PGP MESSAGE-----") + len("-----END PGP MESSAGE-----")
    return mail[start:end].replace("\r\n", "\n").encode()


def _encryption_subkey(home: Path) -> str:
    listing = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return next(f[4] for f in (ln.split(":") for ln in listing.splitlines())
                if f[0] == "sub" and "e" in f[11])  # fmt: skip
