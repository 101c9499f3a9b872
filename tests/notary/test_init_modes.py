"""Files readable by others, and a root CA key left online (issue 10 items 6 and 20).

`notary init` makes the directory 0700 and its secrets 0600, stores an
absolute database path even for a relative --dir, and keeps the TSA root CA
key outside the serving directory; `notary serve` refuses a directory or key
open to others and warns about a readable config; the certmail home is 0700.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.fixtures.notary import CERTMAIL, ORIGIN, NotaryProcess, serve_once

pytestmark = pytest.mark.timeout(120)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*CERTMAIL, *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_init_modes_absolute_db_and_offline_root(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = cli("notary", "init", "--dir", "rel-notary", "--origin", ORIGIN, cwd=work)
    assert r.returncode == 0, r.stderr
    d = work / "rel-notary"
    assert mode(d) == 0o700
    assert mode(d / "notary.toml") == 0o600
    assert mode(d / "notary.db") == 0o600
    assert mode(d / "checkpoint.key") == 0o600
    assert mode(d / "tsa" / "tsa-key.pem") == 0o600
    db = tomllib.loads((d / "notary.toml").read_text())["database"]
    assert db.startswith("sqlite:////") and Path(db.removeprefix("sqlite:///")).is_absolute()
    # the root CA key is beside the directory, not in it; serving needs only the leaf keys
    assert not (d / "tsa" / "root-ca-key.pem").exists()
    root = work / "rel-notary-root"
    assert mode(root) == 0o700 and mode(root / "root-ca-key.pem") == 0o600
    assert (root / "root-ca.pem").read_bytes() == (d / "tsa" / "root-ca.pem").read_bytes()
    assert str(root) in r.stderr
    # served from another working directory, with the root key gone: the same log
    (root / "root-ca-key.pem").unlink()
    p = NotaryProcess(d)
    p.start()
    try:
        token = p.token_for("m@example.test")
        ok = httpx.post(
            p.url + "/v1/notarize",
            json={"sha256": "ab" * 32, "message_id": "<m@x>"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["tst"]  # the TSA signs with its leaf key alone
    finally:
        p.stop()
    assert not (Path.cwd() / "rel-notary").exists()  # serve ran here: nothing relative
    for side in ("notary.db-wal", "notary.db-shm"):
        if (d / side).exists():
            assert mode(d / side) == 0o600
    assert "readable by others" not in p.log_path.read_text()


def test_init_root_dir_option(tmp_path: Path) -> None:
    r = cli(
        "notary",
        "init",
        "--dir",
        str(tmp_path / "n"),
        "--origin",
        ORIGIN,
        "--root-dir",
        str(tmp_path / "offline"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "offline" / "root-ca-key.pem").exists()
    assert not (tmp_path / "n-root").exists()


@pytest.mark.parametrize(
    "target,bits",
    [
        ("", 0o755),
        ("checkpoint.key", 0o644),
        ("tsa/tsa-key.pem", 0o640),
        ("relay/relay-key.pem", 0o604),
    ],
)
def test_serve_refuses_what_others_can_read(notary_dir: Path, target: str, bits: int) -> None:
    path = notary_dir / target if target else notary_dir
    os.chmod(path, bits)
    r = serve_once(notary_dir)
    assert r.returncode == 1, r.stderr
    assert f"certmail: error: {path} is accessible by others" in r.stderr
    assert "Traceback" not in r.stderr and "serving" not in r.stderr


def test_serve_warns_about_a_readable_config(notary_dir: Path) -> None:
    os.chmod(notary_dir / "notary.toml", 0o644)
    p = NotaryProcess(notary_dir)
    p.start()  # a warning, as ssh gives: the directory (0700) still guards the file
    p.stop()
    text = p.log_path.read_text()
    assert "certmail: warning:" in text and "notary.toml is readable by others" in text


def test_certmail_home_made_0700(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    r = subprocess.run(
        [*CERTMAIL, "config", "set", "email", "a@example.org", "--home", str(home)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert mode(home) == 0o700
    assert mode(home / "config.toml") == 0o600
