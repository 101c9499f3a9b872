"""`certmail notary init/accounts/checkpoint` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

from keys.tsa import generate_tsa_pki
from notary.checkpoint import open_checkpoint
from notary.note import Verifier
from tests.fixtures.cli import cli


def test_init_accounts_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "n"
    r = cli("notary", "init", "--dir", str(d), "--origin", "n.test/log", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["origin"] == "n.test/log"
    v = Verifier.from_vkey(info["vkey"])
    assert (d / "checkpoint.key").stat().st_mode & 0o077 == 0
    assert (d / "tsa" / "tsa-key.pem").stat().st_mode & 0o077 == 0
    # refuses to overwrite an existing notary
    r = cli("notary", "init", "--dir", str(d))
    assert r.returncode == 7
    assert r.stderr.splitlines()[0] == f"certmail: error: {d} already holds a notary"
    assert r.stderr.splitlines()[1].startswith("certmail: hint:")
    # accounts: the token alone on the last line
    r = cli("notary", "accounts", "add", "a@x.test", "b@x.test", "--dir", str(d))
    assert r.returncode == 0
    token = r.stdout.strip().splitlines()[-1]
    assert len(token) >= 43 and " " not in token
    r = cli("notary", "accounts", "add", "a@x.test", "--dir", str(d))
    assert r.returncode == 7 and "already belongs" in r.stderr
    r = cli("notary", "accounts", "add", "not an address", "--dir", str(d))
    assert r.returncode == 1 and "not an email address" in r.stderr
    r = cli("notary", "accounts", "list", "--dir", str(d), "--json")
    (acct,) = json.loads(r.stdout)
    assert acct["addresses"] == ["a@x.test", "b@x.test"] and not acct["revoked"]
    assert cli("notary", "accounts", "revoke", "b@x.test", "--dir", str(d)).returncode == 0
    assert json.loads(cli("notary", "accounts", "list", "--dir", str(d), "--json").stdout)[0][
        "revoked"
    ]
    assert cli("notary", "accounts", "revoke", "zz@x.test", "--dir", str(d)).returncode == 6
    # the checkpoint of the empty log, signed by the notary's key
    r = cli("notary", "checkpoint", "--dir", str(d))
    cp = open_checkpoint(r.stdout.encode(), v)
    assert (cp.origin, cp.size) == ("n.test/log", 0)


def test_missing_notary_and_bad_options(tmp_path: Path) -> None:
    r = cli("notary", "checkpoint", "--dir", str(tmp_path / "none"))
    assert r.returncode == 6
    assert "certmail: hint: create one: certmail notary init --dir" in r.stderr
    r = cli("notary", "serve", "--dir", str(tmp_path / "none"), "--http", "nonsense")
    assert r.returncode == 1 and "--http must be HOST:PORT" in r.stderr
    r = cli("notary", "init", "--dir", str(tmp_path / "x"), "--origin", "has space")
    assert r.returncode == 1 and "invalid origin" in r.stderr
    assert "Traceback" not in r.stderr


def test_init_imports_a_tsa_and_refuses_a_ca(tmp_path: Path) -> None:
    src = tmp_path / "pki"
    generate_tsa_pki(src, "Imported TSA")
    d = tmp_path / "n"
    r = cli(
        "notary",
        "init",
        "--dir",
        str(d),
        "--origin",
        "i.test/log",
        "--tsa-cert",
        str(src / "tsa-cert.pem"),
        "--tsa-key",
        str(src / "tsa-key.pem"),
        "--tsa-chain",
        str(src / "root-ca.pem"),
    )
    assert r.returncode == 0, r.stderr
    assert (d / "tsa" / "tsa-cert.pem").read_bytes() == (src / "tsa-cert.pem").read_bytes()
    # the root CA as a TSA certificate is refused, and no notary is left behind
    bad = tmp_path / "bad"
    r = cli(
        "notary",
        "init",
        "--dir",
        str(bad),
        "--origin",
        "i.test/log",
        "--tsa-cert",
        str(src / "root-ca.pem"),
        "--tsa-key",
        str(src / "root-ca-key.pem"),
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("certmail: error:")
    assert not (bad / "notary.toml").exists()
    r = cli("notary", "init", "--dir", str(bad), "--tsa-cert", str(src / "tsa-cert.pem"))
    assert r.returncode == 1 and "--tsa-cert and --tsa-key go together" in r.stderr
