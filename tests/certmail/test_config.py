"""certmail.config: the home, config.toml and CERTMAIL_<NAME> overrides."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest

from certmail.config import (
    OPTIONS,
    Settings,
    default_home,
    env_name,
    load_settings,
    set_option,
)
from keys.errors import Error
from tests.fixtures.cli import clean_env, cli
from tests.fixtures.notary import free_port


def test_home_from_env_then_xdg_then_home(tmp_path: Path) -> None:
    assert load_settings(env={"CERTMAIL_HOME": str(tmp_path / "h")}).home == tmp_path / "h"
    xdg = load_settings(env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert xdg.home == tmp_path / "xdg" / "certmail"
    assert default_home({}) == Path.home() / ".config" / "certmail"
    explicit = load_settings(tmp_path / "x", env={"CERTMAIL_HOME": str(tmp_path / "h")})
    assert explicit.home == tmp_path / "x"


def test_derived_paths(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert (s.gnupghome, s.dkim_dir, s.ledger_path) == (
        tmp_path / "gnupg",
        tmp_path / "dkim",
        tmp_path / "ledger.db",
    )
    assert (s.sent_dir, s.outbox_dir, s.config_path) == (
        tmp_path / "sent",
        tmp_path / "outbox",
        tmp_path / "config.toml",
    )


def test_defaults_without_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert s == Settings(home=tmp_path)
    assert s.require_scan is False and s.email is None


def test_set_option_writes_toml_0600(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "home", env={})
    set_option(s, "email", "alice@example.org")
    set_option(s, "name", 'Alice "Ä" O\'Neil\\')
    set_option(s, "smtp-url", "smtps://alice:pw@mail.example.org:465")
    set_option(s, "notary_token", "tok_123")
    set_option(s, "require_scan", "yes")
    assert s.email == "alice@example.org" and s.require_scan is True
    path = tmp_path / "home" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = tomllib.loads(path.read_text())
    assert data["name"] == 'Alice "Ä" O\'Neil\\'
    assert data["require_scan"] is True
    again = load_settings(tmp_path / "home", env={})
    assert again.smtp_url == "smtps://alice:pw@mail.example.org:465"
    assert again.name == 'Alice "Ä" O\'Neil\\'
    assert again.notary_token == "tok_123" and again.require_scan is True
    set_option(again, "smtp_url", "")
    assert load_settings(tmp_path / "home", env={}).smtp_url is None


def test_env_overrides_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    set_option(s, "notary_url", "https://notary.example.org")
    set_option(s, "clamd", "tcp://127.0.0.1:3310")
    set_option(s, "via", "relay")
    env = {
        "CERTMAIL_NOTARY_URL": "http://127.0.0.1:8080",
        "CERTMAIL_CLAMD": "unix:///tmp/clamd.sock",
        "CERTMAIL_REQUIRE_SCAN": "1",
        "CERTMAIL_NOTARY_TOKEN": "from-env",
    }
    eff = load_settings(tmp_path, env=env)
    assert eff.notary_url == "http://127.0.0.1:8080"
    assert eff.clamd == "unix:///tmp/clamd.sock"
    assert eff.via == "relay"  # not overridden: the file's value
    assert eff.require_scan is True and eff.notary_token == "from-env"
    # An empty env var unsets a file value.
    assert load_settings(tmp_path, env={"CERTMAIL_VIA": ""}).via is None


def test_every_option_has_an_env_var(tmp_path: Path) -> None:
    samples = {
        "email": "a@b.c",
        "name": "N",
        "smtp_url": "smtp://h:25",
        "notary_url": "https://n",
        "notary_token": "t",
        "clamd": "unix:///s",
        "via": "smtp",
        "require_scan": "true",
        "smime_ca": "/etc/ssl/smime-ca.pem",
    }
    assert set(samples) == set(OPTIONS)
    env = {env_name(k): v for k, v in samples.items()}
    s = load_settings(tmp_path, env=env)
    for key, value in samples.items():
        got = getattr(s, key)
        assert got == (True if key == "require_scan" else value)


@pytest.mark.parametrize(
    "name,value",
    [
        ("smtp_url", "http://mail.example.org"),
        ("smtp_url", "mail.example.org:25"),
        ("smtp_url", "smtp://host:notaport"),
        ("notary_url", "ftp://notary"),
        ("clamd", "/run/clamav/clamd.ctl"),
        ("clamd", "http://clamd"),
        ("via", "pigeon"),
        ("require_scan", "maybe"),
        ("email", "not-an-address"),
        ("name", "two\nlines"),
        ("colour", "blue"),
    ],
)
def test_set_option_rejects(tmp_path: Path, name: str, value: str) -> None:
    s = load_settings(tmp_path, env={})
    with pytest.raises(Error):
        set_option(s, name, value)
    assert not (tmp_path / "config.toml").exists()


def test_bad_env_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Error) as e:
        load_settings(tmp_path, env={"CERTMAIL_SMTP_URL": "gopher://x"})
    assert "CERTMAIL_SMTP_URL" in e.value.message


def test_broken_file_is_an_error_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("email = [unclosed\n")
    with pytest.raises(Error) as e:
        load_settings(tmp_path, env={})
    assert "config.toml" in (e.value.hint or "")
    (tmp_path / "config.toml").write_text('colour = "blue"\n')
    with pytest.raises(Error):
        load_settings(tmp_path, env={})


def test_passphrase_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret phrase\nignored\n")
    s = load_settings(tmp_path, env={"CERTMAIL_PASSPHRASE_FILE": str(f)})
    assert s.passphrase() == "s3cret phrase"
    assert load_settings(tmp_path, env={}).passphrase() is None
    missing = load_settings(tmp_path, env={"CERTMAIL_PASSPHRASE_FILE": str(tmp_path / "no")})
    with pytest.raises(Error):
        missing.passphrase()


@pytest.mark.parametrize("where", ["root", "command", "env"])
def test_every_command_that_reads_the_home_takes_home(where: str, tmp_path: Path) -> None:
    """--home before the command, after it, or CERTMAIL_HOME: notarize and proof export
    read that home's settings (its notary URL, unreachable here: exit 5 naming it)."""
    home = tmp_path / "home"
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
    assert cli("--home", str(home), "config", "set", "notary_url", url, env=env).returncode == 0
    assert cli("config", "set", "notary_token", "t" * 32, env=clean_env(home)).returncode == 0
    shown = cli("config", "show", "--home", str(home), "--json", env=env)
    assert json.loads(shown.stdout)["options"]["notary_url"] == url
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Message-ID: <h@example.test>\r\n\r\nhi\r\n")
    for args in (("notarize", str(msg)), ("proof", "export", "0" * 64, "-o", "x.zip")):
        if where == "root":
            p = cli("--home", str(home), *args, env=env)
        elif where == "command":
            p = cli(*args, "--home", str(home), env=env)
        else:
            p = cli(*args, env=clean_env(home))
        if args[0] == "notarize":
            assert p.returncode == 5, p.stderr
            assert url in p.stderr
        else:  # the ledger of that home has no such message
            assert p.returncode == 6, p.stderr
            assert not (tmp_path / "x.zip").exists()
