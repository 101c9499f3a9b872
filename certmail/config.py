"""The certmail home and its settings (``config.toml`` plus ``CERTMAIL_<NAME>`` env vars).

Everything for one identity lives under one directory, the home:
``CERTMAIL_HOME`` if set, else the platform's user config directory
(``$XDG_CONFIG_HOME/certmail`` or ``~/.config/certmail`` on Linux). Settings come
from ``<home>/config.toml``; each is overridden by its environment variable
``CERTMAIL_<NAME>`` (upper case). See docs/config.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from keys.errors import Error

OPTIONS: dict[str, str] = {
    "email": "your address: the From: of what you send and the identity of your OpenPGP key",
    "name": "your name, shown in From: and in your key's user id",
    "smtp_url": "your SMTP server for --via smtp: smtp://[user:pass@]host:port"
    " (STARTTLS when offered; ?starttls=require to insist) or smtps://host:port",
    "notary_url": "the notary's base URL, http(s)://host[:port]",
    "notary_token": "your API token at the notary (kept in config.toml, mode 0600)",
    "clamd": "the ClamAV daemon: unix:///path/clamd.ctl or tcp://host:port"
    " (default: Debian's /run/clamav/clamd.ctl when it exists)",
    "via": "how mail leaves: relay (through the notary, the registered default when a"
    " notary is configured) or smtp (your own server; the notary notarizes the hash)",
    "smime_ca": "the CA certificates (PEM file) S/MIME signers and recipients must chain to"
    " (default: the system store; docs/smime.md)",
    "require_scan": "true: refuse to send or open attachments when no virus scanner answers",
}

SECRET_OPTIONS = ("notary_token",)
URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "smtp_url": ("smtp", "smtps"),
    "notary_url": ("http", "https"),
    "clamd": ("unix", "tcp"),
}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")

ENV_PREFIX = "CERTMAIL_"
PASSPHRASE_FILE_ENV = "CERTMAIL_PASSPHRASE_FILE"  # noqa: S105 - a variable name


def env_name(option: str) -> str:
    """The environment variable of an option: ``smtp_url`` -> ``CERTMAIL_SMTP_URL``."""
    return ENV_PREFIX + option.upper()


@dataclass
class Settings:
    """The effective settings of one certmail home."""

    home: Path
    email: str | None = None
    name: str | None = None
    smtp_url: str | None = None
    notary_url: str | None = None
    notary_token: str | None = None
    clamd: str | None = None
    via: str | None = None
    require_scan: bool = False
    smime_ca: str | None = None  # docs/smime.md
    smime_crl: str | None = None  # --smime-crl FILE only (docs/smime.md, "Revocation")
    passphrase_file: Path | None = None  # CERTMAIL_PASSPHRASE_FILE (env only)

    @property
    def gnupghome(self) -> Path:
        return self.home / "gnupg"

    @property
    def dkim_dir(self) -> Path:
        return self.home / "dkim"

    @property
    def ledger_path(self) -> Path:
        return self.home / "ledger.db"

    @property
    def sent_dir(self) -> Path:
        return self.home / "sent"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    def passphrase(self) -> str | None:
        """The key passphrase from CERTMAIL_PASSPHRASE_FILE (first line), or ``None``."""
        if self.passphrase_file is None:
            return None
        try:
            text = self.passphrase_file.read_text(encoding="utf-8")
        except OSError as e:
            raise Error(
                f"cannot read {PASSPHRASE_FILE_ENV} {self.passphrase_file}: {e.strerror or e}"
            ) from e
        lines = text.splitlines()
        return lines[0] if lines else ""


def default_home(env: Mapping[str, str]) -> Path:
    """The platform's per-user config directory for certmail."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "certmail"
    if sys.platform == "win32":  # pragma: no cover - not a supported CI platform
        base = env.get("APPDATA")
        return Path(base) / "certmail" if base else Path.home() / "certmail"
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "certmail"
    return Path.home() / ".config" / "certmail"


def canonical_name(name: str) -> str:
    """``smtp-url`` or ``SMTP_URL`` -> ``smtp_url``; Error for unknown names."""
    key = name.strip().lower().replace("-", "_")
    if key not in OPTIONS:
        raise Error(
            f"unknown option {name!r}; options: {', '.join(OPTIONS)}", hint="certmail config show"
        )
    return key


def validate(name: str, value: str) -> str | bool | None:
    """Check an option's value; return it parsed (``None`` for empty = unset)."""
    value = value.strip()
    if name == "require_scan":
        low = value.lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise Error(f"require_scan must be true or false, not {value!r}")
    if not value:
        return None
    if any(ord(c) < 32 for c in value):
        raise Error(f"{name} must not contain control characters")
    if name in URL_SCHEMES:
        parts = urlsplit(value)
        schemes = URL_SCHEMES[name]
        ok = parts.scheme in schemes and (parts.hostname or (parts.scheme == "unix" and parts.path))
        if ok and parts.scheme != "unix":
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError:
                ok = False
        if not ok:
            forms = " or ".join(f"{s}://" for s in schemes)
            raise Error(
                f"{name} must be a {forms} URL, not {value!r}",
                hint=f"certmail config set {name} {schemes[0]}://...",
            )
    if name == "email" and ("@" not in value or any(c in value for c in " <>")):
        raise Error(f"not an email address: {value!r}")
    if name == "via" and value not in ("smtp", "relay"):
        raise Error(f"via must be smtp or relay, not {value!r}")
    return value


def _read_file(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise Error(f"cannot read {path}: {e}", hint=f"fix or remove {path}") from e
    return data


def _from_file(data: Mapping[str, object], path: Path) -> dict[str, str | bool | None]:
    values: dict[str, str | bool | None] = {}
    for key, raw in data.items():
        if key not in OPTIONS:
            raise Error(f"{path}: unknown option {key!r}", hint=f"fix or remove {path}")
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        if not isinstance(raw, str):
            raise Error(f"{path}: {key} must be a string", hint=f"fix or remove {path}")
        try:
            values[key] = validate(key, raw)
        except Error as e:
            raise Error(f"{path}: {e.message}", hint=f"certmail config set {key} VALUE") from e
    return values


def load_settings(home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The effective settings: ``config.toml`` values, overridden by ``CERTMAIL_<NAME>``."""
    env = os.environ if env is None else env
    if home is None:
        home = Path(env[env_name("home")]) if env.get(env_name("home")) else default_home(env)
    home = Path(home).expanduser()
    settings = Settings(home=home)
    values = _from_file(_read_file(settings.config_path), settings.config_path)
    for key in OPTIONS:
        if env_name(key) in env:
            try:
                values[key] = validate(key, env[env_name(key)])
            except Error as e:
                raise Error(f"{env_name(key)}: {e.message}") from e
    for key, value in values.items():
        setattr(settings, key, bool(value) if key == "require_scan" else value)
    if env.get(PASSPHRASE_FILE_ENV):
        settings.passphrase_file = Path(env[PASSPHRASE_FILE_ENV]).expanduser()
    return settings


def _toml_value(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # A JSON string with ensure_ascii=False is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def ensure_home(home: Path) -> None:
    """Create the certmail home 0700, or make an existing one 0700 (DESIGN §5: Files).

    It holds the keyring, the ledger, the sent copies and the notary token.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_mode & 0o077:
        os.chmod(home, 0o700)


def write_config(path: Path, values: Mapping[str, str | bool | None]) -> None:
    """Write ``config.toml`` atomically, mode 0600 (it may hold the notary token)."""
    lines = ["# certmail settings; see docs/config.md. CERTMAIL_<NAME> env vars override."]
    for key in OPTIONS:
        value = values.get(key)
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value)}")
    text = "\n".join(lines) + "\n"
    ensure_home(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def set_option(settings: Settings, name: str, value: str) -> None:
    """Validate and store one option in ``config.toml`` (an empty value removes it).

    ``settings`` is updated too (unless an environment variable overrides it,
    the new value is then what :func:`load_settings` returns).
    """
    key = canonical_name(name)
    parsed = validate(key, value)
    path = settings.config_path
    values = _from_file(_read_file(path), path)
    if parsed is None or (key == "require_scan" and parsed is False and value.strip() == ""):
        values.pop(key, None)
    else:
        values[key] = parsed
    write_config(path, values)
    setattr(settings, key, bool(parsed) if key == "require_scan" else parsed)
