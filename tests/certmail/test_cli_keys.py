"""The `certmail init`, `keys` and `config` commands, run as a user runs them.

Each test runs the installed `certmail` entry point in a subprocess (stdin is
not a terminal, so nothing may prompt), with real gpg and a short home.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keys.dkim import dkim_sign, dkim_verify, find_dkim_key
from keys.gpg import Keyring
from tests.fixtures.cli import clean_env, send_args

CERTMAIL = str(Path(sys.executable).with_name("certmail"))

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def new_home() -> Iterator[Callable[[], Path]]:
    homes: list[Path] = []

    def make() -> Path:
        home = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
        homes.append(home)
        return home

    yield make
    for home in homes:
        subprocess.run(
            ["gpgconf", "--homedir", str(home / "gnupg"), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def run(
    home: Path,
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERTMAIL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(home, **(env or {})),
        timeout=120,
        check=False,
    )


def init(home: Path, email: str, name: str) -> str:
    r = run(home, "init", "--email", email, "--name", name, "--no-passphrase")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_init_creates_identity_and_config(new_home: Callable[[], Path]) -> None:
    home = new_home()
    fpr = init(home, "alice@example.org", "Alice Example")
    assert re.fullmatch(r"[0-9A-F]{40}", fpr)
    assert (home / "gnupg").is_dir()
    config = (home / "config.toml").read_text()
    assert 'email = "alice@example.org"' in config and 'name = "Alice Example"' in config
    r = run(home, "keys", "list", "--json")
    assert r.returncode == 0
    [key] = json.loads(r.stdout)["keys"]
    assert key["fingerprint"] == fpr and key["has_secret"] and key["algo"] == "ed25519"
    assert key["validity"] == "ultimate" and key["trusted"]
    assert run(home, "keys", "fingerprint", "alice@example.org").stdout.strip() == fpr
    again = run(home, "init", "--email", "alice@example.org", "--name", "A", "--no-passphrase")
    assert again.returncode == 7
    assert "certmail: error:" in again.stderr and "certmail: hint:" in again.stderr


def test_init_json(new_home: Callable[[], Path]) -> None:
    home = new_home()
    r = run(home, "init", "--email", "j@example.org", "--name", "J", "--no-passphrase", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["email"] == "j@example.org" and out["protected"] is False
    assert len(out["fingerprint"]) == 40


def test_init_needs_a_passphrase_source_off_a_terminal(
    new_home: Callable[[], Path], tmp_path: Path
) -> None:
    home = new_home()
    r = run(home, "init", "--email", "p@example.org", "--name", "P")
    assert r.returncode == 1
    assert "CERTMAIL_PASSPHRASE_FILE" in r.stderr
    assert not list((home / "gnupg").glob("private-keys-v1.d/*.key"))
    pw = tmp_path / "pw"
    pw.write_text("a long passphrase\n")
    r = run(
        home,
        "init",
        "--email",
        "p@example.org",
        "--name",
        "P",
        env={"CERTMAIL_PASSPHRASE_FILE": str(pw)},
    )
    assert r.returncode == 0, r.stderr
    fpr = r.stdout.strip()
    # The key is protected: unusable without the passphrase, usable with it.
    with pytest.raises(Exception):
        Keyring(home / "gnupg").sign_detached(b"x", fpr)
    Keyring(home / "gnupg", passphrase="a long passphrase").sign_detached(b"x", fpr)


def test_exchange_import_trust(new_home: Callable[[], Path], tmp_path: Path) -> None:
    alice, bob = new_home(), new_home()
    fa = init(alice, "alice@example.org", "Alice")
    fb = init(bob, "bob@example.org", "Bob")
    exported = run(alice, "keys", "export", "alice@example.org")
    assert exported.returncode == 0
    assert exported.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    key_file = tmp_path / "alice.asc"
    assert run(alice, "keys", "export", fa, "-o", str(key_file)).returncode == 0
    assert key_file.read_text() == exported.stdout

    imported = run(bob, "keys", "import", str(key_file))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == fa
    assert "certmail keys trust alice@example.org" in imported.stderr

    bob_ring = Keyring(bob / "gnupg")
    with pytest.raises(Exception) as e:
        bob_ring.encryption_key("alice@example.org")
    assert getattr(e.value, "hint", None) == "certmail keys trust alice@example.org"

    trusted = run(bob, "keys", "trust", "alice@example.org", "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["validity"] == "full"
    assert bob_ring.encryption_key("alice@example.org") == fa

    # And back, through stdin.
    back = run(alice, "keys", "import", "-", stdin=run(bob, "keys", "export", fb).stdout)
    assert back.returncode == 0 and back.stdout.strip() == fb
    listed = json.loads(run(alice, "keys", "list", "--json").stdout)["keys"]
    assert {k["fingerprint"]: k["validity"] for k in listed} == {fa: "ultimate", fb: "unknown"}
    secret = json.loads(run(alice, "keys", "list", "--secret", "--json").stdout)["keys"]
    assert [k["fingerprint"] for k in secret] == [fa]


def test_trust_with_protected_key_off_a_terminal(
    new_home: Callable[[], Path], tmp_path: Path
) -> None:
    alice, bob = new_home(), new_home()
    pw = tmp_path / "pw"
    pw.write_text("bob's secret\n")
    env = {"CERTMAIL_PASSPHRASE_FILE": str(pw)}
    fa = init(alice, "alice@example.org", "Alice")
    assert run(bob, "init", "--email", "bob@example.org", "--name", "Bob", env=env).returncode == 0
    run(bob, "keys", "import", "-", stdin=run(alice, "keys", "export", fa).stdout)
    no_pass = run(bob, "keys", "trust", fa)
    assert no_pass.returncode != 0
    assert "CERTMAIL_PASSPHRASE_FILE" in no_pass.stderr
    ok = run(bob, "keys", "trust", fa, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == fa


def test_errors_name_the_next_command(new_home: Callable[[], Path]) -> None:
    home = new_home()
    init(home, "alice@example.org", "Alice")
    missing = run(home, "keys", "fingerprint", "nobody@example.org")
    assert missing.returncode == 6
    assert "certmail: hint: certmail keys import FILE" in missing.stderr
    assert run(home, "keys", "trust", "nobody@example.org").returncode == 6
    assert run(home, "keys", "export", "nobody@example.org").returncode == 6
    garbage = run(home, "keys", "import", "-", stdin="not a key\n")
    assert garbage.returncode == 3
    assert "no OpenPGP key found" in garbage.stderr
    assert "Traceback" not in garbage.stderr
    absent = run(home, "keys", "import", str(home / "absent.asc"))
    assert absent.returncode == 2


def test_empty_home_list(new_home: Callable[[], Path]) -> None:
    home = new_home()
    r = run(home, "keys", "list")
    assert r.returncode == 0 and r.stdout == ""
    assert "certmail init" in r.stderr
    assert json.loads(run(home, "keys", "list", "--json").stdout) == {"keys": []}


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_dkim_generate_and_record(new_home: Callable[[], Path], algorithm: str) -> None:
    home = new_home()
    init(home, "alice@example.org", "Alice")
    no_key = run(home, "keys", "dkim", "record")
    assert no_key.returncode == 6 and "keys dkim generate" in no_key.stderr
    generate = ["keys", "dkim", "generate", "--domain", "example.org", "--selector", "cm1"]
    gen = run(home, *generate, "--algorithm", algorithm, "--json")
    assert gen.returncode == 0, gen.stderr
    out = json.loads(gen.stdout)
    assert out["name"] == "cm1._domainkey.example.org"
    assert out["value"].startswith(f"v=DKIM1; k={algorithm}; p=")
    assert Path(out["private_key_path"]).stat().st_mode & 0o077 == 0
    record = run(home, "keys", "dkim", "record", "--json")  # domain from the config email
    assert record.returncode == 0
    assert json.loads(record.stdout)["value"] == out["value"]
    zone = run(home, "keys", "dkim", "record", "--domain", "example.org").stdout
    assert zone.startswith("cm1._domainkey.example.org. IN TXT ")
    # The published record verifies what the key signs.
    key = find_dkim_key(home / "dkim", "example.org")
    assert key is not None
    msg = b"From: alice@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    records = {out["name"].encode(): out["value"].encode()}
    dkim_verify(dkim_sign(msg, key) + msg, dnsfunc=lambda n: records.get(n, b""))
    twice = run(home, *generate, "--algorithm", algorithm)
    assert twice.returncode == 7


def test_config_show_and_set(new_home: Callable[[], Path]) -> None:
    home = new_home()
    r = run(home, "config", "set", "notary-url", "https://notary.example.org")
    assert r.returncode == 0, r.stderr
    assert run(home, "config", "set", "notary_token", "tok_secret").returncode == 0
    assert run(home, "config", "set", "require_scan", "true").returncode == 0
    shown = json.loads(run(home, "config", "show", "--json").stdout)
    assert shown["options"]["notary_url"] == "https://notary.example.org"
    assert shown["options"]["notary_token"] == "********"
    assert shown["options"]["require_scan"] is True
    assert shown["sources"]["notary_url"] == "file"
    assert shown["sources"]["smtp_url"] == "default"
    assert shown["paths"]["gnupghome"] == str(home / "gnupg")
    revealed = json.loads(run(home, "config", "show", "--json", "--reveal").stdout)
    assert revealed["options"]["notary_token"] == "tok_secret"
    env = {"CERTMAIL_NOTARY_URL": "http://127.0.0.1:9999", "CERTMAIL_CLAMD": "tcp://c:3310"}
    over = json.loads(run(home, "config", "show", "--json", env=env).stdout)
    assert over["options"]["notary_url"] == "http://127.0.0.1:9999"
    assert over["sources"]["notary_url"] == "env" and over["sources"]["clamd"] == "env"
    human = run(home, "config", "show")
    assert "notary_url" in human.stdout and "tok_secret" not in human.stdout
    bad = run(home, "config", "set", "smtp_url", "http://mail.example.org")
    assert bad.returncode == 1 and "smtp://" in bad.stderr
    unknown = run(home, "config", "set", "colour", "blue")
    assert unknown.returncode == 1 and "certmail config show" in unknown.stderr
    bad_env = run(home, "config", "show", env={"CERTMAIL_VIA": "pigeon"})
    assert bad_env.returncode == 1 and "CERTMAIL_VIA" in bad_env.stderr


def test_home_option_overrides_env(new_home: Callable[[], Path]) -> None:
    env_home, opt_home = new_home(), new_home()
    r = run(env_home, "config", "set", "via", "smtp", "--home", str(opt_home))
    assert r.returncode == 0
    assert (opt_home / "config.toml").exists() and not (env_home / "config.toml").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["init", "--help"],
        ["keys", "--help"],
        ["keys", "trust", "--help"],
        ["keys", "dkim", "generate", "--help"],
        ["config", "set", "--help"],
    ],
)
def test_help_teaches(new_home: Callable[[], Path], args: list[str]) -> None:
    r = run(new_home(), *args)
    assert r.returncode == 0
    assert "certmail" in r.stdout or "CERTMAIL" in r.stdout


def _gpg(gnupghome: Path, *args: str, stdin: bytes = b"") -> bytes:
    p = subprocess.run(
        ["gpg", "--homedir", str(gnupghome), "--batch", "--yes", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_import_refuses_a_secret_key_unless_asked(
    new_home: Callable[[], Path], tmp_path: Path
) -> None:
    """Issue 10 item 12: a file with a secret key is refused (off a terminal) with the
    --secret hint, and nothing is imported; --secret imports it."""
    alice, bob = new_home(), new_home()
    init(alice, "alice@example.org", "Alice")
    fb = init(bob, "bob@example.org", "Bob")
    secret = tmp_path / "bob-secret.asc"
    export = ["--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fb]
    secret.write_bytes(_gpg(bob / "gnupg", "--armor", *export))
    refused = run(alice, "keys", "import", str(secret))
    assert refused.returncode == 1, refused.stderr
    assert "certmail: error: the file holds a secret key" in refused.stderr
    assert (
        "certmail: hint: to import your own secret key on purpose: "
        "certmail keys import --secret FILE" in refused.stderr
    )
    listed = json.loads(run(alice, "keys", "list", "--json").stdout)["keys"]
    assert fb not in [k["fingerprint"] for k in listed]
    binary = tmp_path / "bob-secret.gpg"
    binary.write_bytes(_gpg(bob / "gnupg", *export))
    assert run(alice, "keys", "import", str(binary)).returncode == 1
    ok = run(alice, "keys", "import", "--secret", str(secret))
    assert ok.returncode == 0, ok.stderr
    held = json.loads(run(alice, "keys", "list", "--secret", "--json").stdout)["keys"]
    assert fb in [k["fingerprint"] for k in held]


def test_import_of_a_v6_key_says_gnupg_does_not_support_it(new_home: Callable[[], Path]) -> None:
    """The RFC 9580 Appendix A.3 sample v6 certificate (tests/vectors/rfc9580): GnuPG 2.2
    cannot read it, and the error says that instead of "no OpenPGP key found"."""
    home = new_home()
    init(home, "alice@example.org", "Alice")
    v6 = Path(__file__).resolve().parent.parent / "vectors" / "rfc9580" / "v6-certificate.asc"
    p = run(home, "keys", "import", str(v6))
    version = subprocess.run(
        ["gpg", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    if version.startswith("2.2") or version.startswith("2.4"):
        assert p.returncode == 3, p.stderr
        assert "no OpenPGP key found" not in p.stderr
        assert (
            f"the file holds an OpenPGP v6 key (RFC 9580), which is not supported by "
            f"the installed GnuPG {version}"
        ) in p.stderr
    else:  # a GnuPG that reads v6 keys imports it
        assert p.returncode == 0, p.stderr


def test_revoked_and_expired_keys_are_named_on_import_trust_and_send(
    new_home: Callable[[], Path], tmp_path: Path
) -> None:
    alice, bob, carol = new_home(), new_home(), new_home()
    init(alice, "alice@example.org", "Alice")
    fb = init(bob, "bob@example.org", "Bob")
    # Bob revokes his key with the certificate GnuPG made for it, then exports it.
    rev = (bob / "gnupg" / "openpgp-revocs.d" / f"{fb}.rev").read_text()
    _gpg(bob / "gnupg", "--import", stdin=rev.replace(":-----BEGIN", "-----BEGIN").encode())
    revoked = run(bob, "keys", "export", fb).stdout
    # Carol's key expired: made two years ago (faked time) valid for a day.
    cg = carol / "gnupg"
    cg.mkdir(mode=0o700)
    old = ("--faked-system-time", "20200101T000000", "--passphrase", "")
    _gpg(cg, *old, "--quick-gen-key", "Carol <carol@example.org>", "ed25519", "sign,cert", "1d")
    fc = _gpg(cg, "--with-colons", "--list-keys").decode().split("fpr:::::::::")[1][:40]
    _gpg(cg, *old, "--quick-add-key", fc, "cv25519", "encr", "1d")
    expired = _gpg(cg, "--armor", "--export", fc).decode()

    p = run(alice, "keys", "import", "-", stdin=revoked)
    assert p.returncode == 0, p.stderr
    assert f"certmail: warning: {fb} (bob@example.org) is revoked" in p.stderr
    assert "[revoked]" in p.stderr and "certmail keys trust" not in p.stderr
    p = run(alice, "keys", "import", "-", "--json", stdin=expired)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["warnings"] == [
        f"{fc} (carol@example.org) is expired on 2020-01-02: nothing can be sent to it; "
        "ask its owner for a current key"
    ]

    for addr, fpr, state in (
        ("bob@example.org", fb, "revoked"),
        ("carol@example.org", fc, "expired on 2020-01-02"),
    ):
        p = run(alice, "keys", "trust", addr, "--yes")
        assert p.returncode == 1, p.stderr
        assert f"certmail: error: the key {fpr} for {addr} is {state}" in p.stderr
        assert f"certmail: hint: ask {addr} for a current key" in p.stderr
        body = tmp_path / "body.txt"
        body.write_text("hello\n")
        p = run(
            alice,
            *send_args(
                addr, "s", "--body-file", str(body), "--via", "smtp", "--no-notarize", as_json=False
            ),
            env={"CERTMAIL_SMTP_URL": "smtp://127.0.0.1:9"},
        )
        assert p.returncode == 1, p.stderr
        assert f"certmail: error: the key {fpr} for {addr} is {state}" in p.stderr
