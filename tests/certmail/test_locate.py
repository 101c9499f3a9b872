"""Finding keys (issue 11 item 7): WKD over real HTTPS on loopback, a VKS service, Autocrypt.

The WKD tree is served by a TLS server with a test CA (``CERTMAIL_KEYS_CA``);
``openpgpkey.example.test`` and ``example.test`` reach it through
``CERTMAIL_WKD_HOST_OVERRIDE`` while TLS checks the certificate against those
names. Every hostile answer must leave the keyring as it was, and nothing
found is ever trusted.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from certmail.autocrypt import AutocryptError, ingest, parse_header
from certmail.locate import locate
from certmail.locate.admit import WrongKeyError
from certmail.locate.fetch import CA_ENV, AnswerTooLargeError, tls_context
from certmail.locate.store import get_peer, sources_of
from certmail.locate.wkd import wkd_hash, wkd_urls
from keys.errors import Error, MalformedError, NotFoundError, VerificationError
from keys.gpg import Keyring
from tests.certmail.keyservers import KeyServer, wkd_tls
from tests.fixtures.cli import CERTMAIL, clean_env, cli, one_line_error
from tests.fixtures.locate import init_and_send
from tests.fixtures.x509 import certificate

pytestmark = pytest.mark.timeout(120)

BOB = "bob@example.test"
HU = wkd_hash("bob")
ADV = f"/.well-known/openpgpkey/example.test/hu/{HU}?l=bob"
DIRECT = f"/.well-known/openpgpkey/hu/{HU}?l=bob"


def export(keyring: Keyring, fpr: str) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(keyring.gnupghome), "--batch", "--export", fpr],
        capture_output=True,
        check=True,
    ).stdout


@pytest.fixture
def keys(keyring_factory: Callable[[str, str], tuple[Keyring, str]]) -> dict[str, bytes]:
    bob, bob_fpr = keyring_factory(BOB, "Bob")
    eve, eve_fpr = keyring_factory("eve@evil.test", "Eve")
    return {"bob": export(bob, bob_fpr), "eve": export(eve, eve_fpr), "bob_fpr": bob_fpr.encode()}


@pytest.fixture
def mine(gnupghome_factory: Callable[[], Path]) -> Keyring:
    return Keyring(gnupghome_factory())


def wkd_env(
    tmp_path: Path, server: KeyServer, ca: Path, *, advanced: bool = True
) -> dict[str, str]:
    # With advanced=False the openpgpkey host goes to a port nothing listens on.
    adv = server.address if advanced else "127.0.0.1:9"
    return {
        "CERTMAIL_KEYS_CA": str(ca),
        "CERTMAIL_WKD_HOST_OVERRIDE": (
            f"openpgpkey.example.test={adv} example.test={server.address}"
        ),
    }


def test_wkd_hash_is_the_drafts_example() -> None:
    # draft-koch-openpgp-webkey-service §3.1: Joe.Doe@Example.ORG
    assert wkd_hash("Joe.Doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    adv, direct = wkd_urls("Joe.Doe@Example.ORG")
    assert adv == (
        "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/"
        "iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
    )
    assert direct.startswith("https://example.org/.well-known/openpgpkey/hu/iy9q")


def test_wkd_advanced_method_over_https_imports_untrusted(
    tmp_path: Path, keys: dict[str, bytes], mine: Keyring
) -> None:
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({ADV: (200, keys["bob"])}, tls) as srv:
        found = locate(
            mine, tmp_path / "home", BOB, methods=("wkd",), env=wkd_env(tmp_path, srv, ca)
        )
    assert found.source == "wkd" and found.label == "domain-verified"
    assert found.detail == "advanced method"
    assert found.fingerprints == [keys["bob_fpr"].decode()]
    key = mine.key_for(BOB)
    assert key.validity not in ("full", "ultimate")  # never trusted silently
    assert key.emails == (BOB,)
    [src] = sources_of(tmp_path / "home", key.fingerprint)
    assert (src.source, src.label) == ("wkd", "domain-verified")


def test_wkd_direct_method_when_the_subdomain_is_absent(
    tmp_path: Path, keys: dict[str, bytes], mine: Keyring
) -> None:
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({DIRECT: (200, keys["bob"])}, tls) as srv:
        env = wkd_env(tmp_path, srv, ca, advanced=False)
        found = locate(mine, tmp_path / "home", BOB, methods=("wkd",), env=env)
    assert found.detail == "direct method"
    assert srv.hits == [DIRECT]


def test_wkd_certificate_from_another_ca_is_refused(
    tmp_path: Path, keys: dict[str, bytes], mine: Keyring
) -> None:
    _, tls = wkd_tls(tmp_path, "example.test")
    (tmp_path / "other").mkdir()
    other_ca, _ = wkd_tls(tmp_path / "other", "example.test")
    with KeyServer({ADV: (200, keys["bob"])}, tls) as srv:
        with pytest.raises(VerificationError, match=r"certificate of openpgpkey\.example\.test"):
            locate(
                mine, tmp_path / "home", BOB, methods=("wkd",), env=wkd_env(tmp_path, srv, other_ca)
            )
    assert mine.list_keys() == []


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        ("eve", WrongKeyError, "another address"),
        (b"\x00garbage, not a key at all\xff" * 20, MalformedError, "no usable key"),
        ("HUGE", AnswerTooLargeError, "cut off"),
        ("HUGE-DECLARED", AnswerTooLargeError, "1,073,741,824 bytes"),
    ],
)
def test_hostile_wkd_answers_change_nothing(
    tmp_path: Path,
    keys: dict[str, bytes],
    mine: Keyring,
    body: bytes | str,
    error: type[Exception],
    words: str,
) -> None:
    ca, tls = wkd_tls(tmp_path, "example.test")
    answer = keys["eve"] if body == "eve" else body
    with KeyServer({ADV: (200, answer)}, tls) as srv:
        with pytest.raises(error, match=words):
            locate(mine, tmp_path / "home", BOB, methods=("wkd",), env=wkd_env(tmp_path, srv, ca))
    assert mine.list_keys() == []
    assert not (tmp_path / "home" / "peers.db").exists() or not sources_of(
        tmp_path / "home", keys["bob_fpr"].decode()
    )


def test_wkd_404_is_not_found(tmp_path: Path, mine: Keyring) -> None:
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({}, tls) as srv:
        with pytest.raises(NotFoundError, match=r"no key found for bob@example\.test"):
            locate(mine, tmp_path / "home", BOB, methods=("wkd",), env=wkd_env(tmp_path, srv, ca))


def test_vks_keyserver_by_email(tmp_path: Path, keys: dict[str, bytes], mine: Keyring) -> None:
    with KeyServer({"/vks/v1/by-email/bob%40example.test": (200, keys["bob"])}) as srv:
        found = locate(
            mine,
            tmp_path / "home",
            BOB,
            methods=("keyserver",),
            keyserver=f"http://{srv.address}",
            env={},
        )
    assert (found.source, found.label) == ("keyserver", "keyserver")
    assert mine.key_for(BOB).validity not in ("full", "ultimate")


def test_vks_answering_another_address_is_refused(
    tmp_path: Path, keys: dict[str, bytes], mine: Keyring
) -> None:
    with KeyServer({"/vks/v1/by-email/bob%40example.test": (200, keys["eve"])}) as srv:
        with pytest.raises(WrongKeyError):
            locate(
                mine,
                tmp_path / "h",
                BOB,
                methods=("keyserver",),
                keyserver=f"http://{srv.address}",
                env={},
            )
    assert mine.list_keys() == []


def test_plain_http_keyserver_off_loopback_is_refused(tmp_path: Path, mine: Keyring) -> None:
    from keys.errors import Error

    with pytest.raises(Error, match="only https"):
        locate(
            mine,
            tmp_path / "h",
            BOB,
            methods=("keyserver",),
            keyserver="http://keys.example",
            env={},
        )


# -- Autocrypt -------------------------------------------------------------------


def autocrypt_mail(keydata: bytes, *, sender: str = BOB, addr: str = BOB, date: str) -> bytes:
    b64 = base64.b64encode(keydata).decode()
    folded = "\r\n ".join(b64[i : i + 70] for i in range(0, len(b64), 70))
    return (
        f"From: Bob <{sender}>\r\nTo: alice@example.org\r\nDate: {date}\r\n"
        f"Autocrypt: addr={addr}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n"
        "Subject: hi\r\n\r\nhello\r\n"
    ).encode()


HEAD = b"From: bob@example.test\r\n"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_autocrypt_header_feeds_the_peer_state_then_locate_imports_tofu(
    tmp_path: Path, keys: dict[str, bytes], mine: Keyring
) -> None:
    home = tmp_path / "home"
    done = ingest(
        home, autocrypt_mail(keys["bob"], date="Tue, 01 Dec 2026 10:00:00 +0000"), now=NOW
    )
    assert done.action == "key"
    peer = get_peer(home, BOB)
    assert peer is not None and peer.prefer_encrypt == "mutual"
    assert peer.autocrypt_timestamp == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert mine.list_keys() == []  # receiving mail does not touch the keyring
    found = locate(mine, home, BOB, methods=("autocrypt",), env={})
    assert (found.source, found.label) == ("autocrypt", "tofu")
    assert mine.key_for(BOB).validity not in ("full", "ultimate")


def test_autocrypt_older_message_does_not_replace_the_key(
    tmp_path: Path, keys: dict[str, bytes]
) -> None:
    home = tmp_path / "home"
    ingest(home, autocrypt_mail(keys["bob"], date="Tue, 01 Dec 2026 10:00:00 +0000"), now=NOW)
    plain = b"From: bob@example.test\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nx\r\n"
    assert ingest(home, plain, now=NOW).action == "skipped"
    newer = b"From: bob@example.test\r\nDate: Tue, 01 Dec 2026 11:00:00 +0000\r\n\r\nx\r\n"
    assert ingest(home, newer, now=NOW).action == "seen"
    peer = get_peer(home, BOB)
    assert peer is not None and peer.keydata is not None
    assert peer.last_seen == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert peer.autocrypt_timestamp == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "mail",
    [
        HEAD + b"Autocrypt: addr=bob@example.test; keydata=!!notbase64!!\r\n\r\nx",
        HEAD + b"Autocrypt: addr=bob@example.test; keydata=AAAA\r\n\r\nx",
        HEAD + b"Autocrypt: addr=bob@example.test; colour=red; keydata=AAAA\r\n\r\nx",
        HEAD + b"Autocrypt: garbage\r\n\r\nx",
        "other-address",
    ],
)
def test_garbage_autocrypt_header_stores_nothing(
    tmp_path: Path, keys: dict[str, bytes], mail: bytes | str
) -> None:
    home = tmp_path / "home"
    if mail == "other-address":  # a header for bob carrying Eve's key
        mail = autocrypt_mail(keys["eve"], date="Tue, 01 Dec 2026 10:00:00 +0000")
    assert isinstance(mail, bytes)
    with pytest.raises(AutocryptError):
        ingest(home, mail, now=NOW)
    assert get_peer(home, BOB) is None


def test_parse_header_ignores_noncritical_attributes() -> None:
    h = parse_header("addr=Bob@Example.test; _extra=1; keydata=AAAA")
    assert (h.addr, h.prefer_encrypt, h.keydata) == (BOB, "nopreference", b"\x00\x00\x00")


# -- the CLI -----------------------------------------------------------------------


def test_cli_keys_locate_and_send_never_trust(tmp_path: Path, keys: dict[str, bytes]) -> None:
    home = tmp_path / "alice"
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({ADV: (200, keys["bob"])}, tls) as srv:
        env = clean_env(home, **wkd_env(tmp_path, srv, ca))
        send = init_and_send(env, BOB, name="Alice")
        assert "in the Web Key Directory (advanced method; domain-verified)" in send.stderr
        assert "not trusted" in one_line_error(send)
        assert send.returncode != 0
        again = cli("keys", "locate", BOB, "--wkd", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert '"label": "domain-verified"' in again.stdout and '"trusted": false' in again.stdout


def test_cli_keys_locate_hostile_is_one_line(tmp_path: Path, keys: dict[str, bytes]) -> None:
    ca, tls = wkd_tls(tmp_path, "example.test")
    with KeyServer({ADV: (200, keys["eve"])}, tls) as srv:
        p = subprocess.run(
            [*CERTMAIL, "keys", "locate", BOB, "--wkd"],
            env=clean_env(tmp_path / "h", **wkd_env(tmp_path, srv, ca)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert p.returncode == 3
    assert "another address" in one_line_error(p)


def test_open_feeds_autocrypt_and_a_garbage_header_changes_nothing(
    correspondents: Any, tmp_path: Path
) -> None:
    """Alice's certmail sends an Autocrypt header; Bob's open keeps it (TOFU, not trusted).
    The same message with its Autocrypt header replaced by garbage still opens, with one
    warning, and the state Bob has for Alice is unchanged."""
    from tests.fixtures.cli import delivered, run, send_args

    c = correspondents
    sent = run(
        c.alice, *send_args(c.bob.email, "Hi", "--via", "smtp", "--no-notarize"), stdin=b"Hello.\n"
    )
    assert sent.returncode == 0, sent.stderr
    eml = delivered(c, tmp_path)
    p = run(c.bob, "open", str(eml), "--no-ack")
    assert p.returncode == 0, p.stderr
    assert f"kept the Autocrypt key of {c.alice.email}" in p.stderr
    peer = get_peer(c.bob.settings.home, c.alice.email)
    assert peer is not None and peer.keydata and peer.prefer_encrypt == "mutual"
    raw = eml.read_bytes()
    start = raw.index(b"Autocrypt: ")
    end = raw.index(b"\r\n", raw.index(b"keydata=", start) + 10)
    while raw[end + 2 : end + 3] in (b" ", b"\t"):
        end = raw.index(b"\r\n", end + 2)
    bad = tmp_path / "bad.eml"
    bad.write_bytes(
        raw[:start]
        + b"Autocrypt: addr="
        + c.alice.email.encode()
        + b"; keydata=!!!garbage"
        + raw[end:]
    )
    p = run(c.bob, "open", str(bad), "--no-ack")
    assert p.returncode == 0, p.stderr
    assert "ignored the message's Autocrypt header" in p.stderr
    assert "Traceback" not in p.stderr
    assert get_peer(c.bob.settings.home, c.alice.email) == peer


def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    from certmail.locate.fetch import get_bounded
    from keys.errors import TemporaryError

    with KeyServer({"/slow": (200, "TRICKLE")}) as srv:
        with pytest.raises(TemporaryError, match="did not answer in time"):
            get_bounded(f"http://{srv.address}/slow", env={}, timeout=2)


def test_an_override_that_is_not_host_ip_port_is_one_clear_error(
    tmp_path: Path, mine: Keyring
) -> None:
    from keys.errors import Error

    with pytest.raises(Error, match="is not host=IP:PORT"):
        locate(mine, tmp_path, BOB, methods=("wkd",), env={"CERTMAIL_WKD_HOST_OVERRIDE": "junk"})


def test_special_use_domains_are_not_asked_without_an_override(
    tmp_path: Path, mine: Keyring
) -> None:
    from certmail.locate.wkd import special_use

    assert special_use("example.test") and special_use("mail.example.org")
    assert not special_use("example.de") and not special_use("notexample.org")
    with pytest.raises(NotFoundError):
        locate(mine, tmp_path, BOB, methods=("wkd",), env={})


def test_an_outer_from_that_is_not_the_protected_one_changes_nothing(
    tmp_path: Path, keys: dict[str, bytes]
) -> None:
    home = tmp_path / "home"
    mail = autocrypt_mail(keys["bob"], date="Tue, 01 Dec 2026 10:00:00 +0000")
    done = ingest(home, mail, now=NOW, protected_from="mallory@example.test")
    assert done.action == "skipped"
    assert get_peer(home, BOB) is None


def test_send_uses_certmail_keyserver(tmp_path: Path, keys: dict[str, bytes]) -> None:
    """The env var alone makes send ask the keyserver (WKD is not asked for .test)."""
    home = tmp_path / "alice"
    with KeyServer({"/vks/v1/by-email/bob%40example.test": (200, keys["bob"])}) as srv:
        env = clean_env(home, CERTMAIL_KEYSERVER=f"http://{srv.address}")
        send = init_and_send(env, BOB, name="A")
        assert srv.hits == ["/vks/v1/by-email/bob%40example.test"]
        again = subprocess.run(
            [
                *CERTMAIL,
                "send",
                "--to",
                BOB,
                "--subject",
                "s",
                "--via",
                "smtp",
                "--no-locate",
                "--no-notarize",
            ],
            input="hello\n",
            env={**env, "CERTMAIL_SMTP_URL": "smtp://127.0.0.1:9"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert len(srv.hits) == 1  # --no-locate (and the key is there now anyway)
    assert "in the keyserver (VKS by-email; keyserver)" in send.stderr
    assert "not trusted" in one_line_error(send)
    assert "not trusted" in one_line_error(again)


def test_the_key_lookups_tls_context_is_loaded_once_per_ca_file(tmp_path: Path) -> None:
    """One CA store load per CA file while it is unchanged; a changed file, a new one."""
    ca = tmp_path / "ca.pem"
    ca.write_text(_a_ca_pem())
    env = {CA_ENV: str(ca)}
    first = tls_context(env)
    assert tls_context(env) is first  # the same file: the same context
    ca.write_text(_a_ca_pem() + _a_ca_pem())  # rewritten (size and mtime change)
    again = tls_context(env)
    assert again is not first and len(again.get_ca_certs()) >= 1
    ca.unlink()
    with pytest.raises(Error, match=CA_ENV):
        tls_context(env)


def _a_ca_pem() -> str:
    """A self-signed CA certificate, PEM (tests/fixtures/x509.py)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = certificate("test CA", ec.generate_private_key(ec.SECP256R1()), ca=True)
    return cert.public_bytes(serialization.Encoding.PEM).decode()
