"""The notary's directory: its configuration file and what ``notary init`` creates.

Layout of a notary directory::

    notary.toml       configuration (origin, database URL, TSA policy, limits), 0600
    checkpoint.key    Ed25519 checkpoint signing key (skey text, 0600)
    notary.vkey       its verifier key, the text clients pin
    tsa/              RFC 3161 TSA: tsa-key.pem (0600), tsa-cert.pem, tsa-chain.pem,
                      root-ca.pem, serial state
    notary.db         the SQLite database (default backend), 0600
    relay/            the SMTP relay's TLS certificate and key (relay-key.pem 0600)

The directory itself is 0700. A generated TSA's root CA key is not in it:
``notary init`` writes ``root-ca-key.pem`` to a separate root directory
(``--root-dir``, default ``DIR-root`` beside it), to be kept offline; serving
needs only the leaf keys. :func:`check_permissions` is what ``notary serve``
checks at start (docs/notary.md, "Files and permissions").
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from keys.errors import ConflictError, Error, NotFoundError

CONFIG_NAME = "notary.toml"
KEY_NAME = "checkpoint.key"
VKEY_NAME = "notary.vkey"
TSA_DIR = "tsa"
DB_NAME = "notary.db"

DEFAULT_MAX_BODY = 1 << 20  # bytes of a JSON request body
RELAY_DIR = "relay"
DEFAULT_MAX_MESSAGE = 50 * 1024 * 1024  # bytes of one relayed message
DEFAULT_RETRY_DEADLINE = 24 * 3600  # seconds before a delivery is given up
DEFAULT_WARN_AFTER = 12 * 3600  # seconds before the sender hears of a delay
# POST /v1/ack (unauthenticated): at most so many per source address, and per
# message, in any window of DEFAULT_ACK_WINDOW seconds.
DEFAULT_ACK_PER_SOURCE = 30
DEFAULT_ACK_PER_MESSAGE = 10
DEFAULT_ACK_WINDOW = 60.0
# HTTP: concurrent connections from one address, and seconds to send a
# request's header section (notary.http_limits).
DEFAULT_HTTP_PER_PEER = 128
DEFAULT_HTTP_HEADER_TIMEOUT = 10.0
# Seconds between deletions of expired or refused pickups' ciphertext.
DEFAULT_PICKUP_PURGE_EVERY = 30.0
_ORIGIN_RE = re.compile(r"[A-Za-z0-9._~:/@!$&'()*,;=-]{1,255}")


@dataclass(frozen=True)
class NotaryConfig:
    """A notary's settings, read from ``notary.toml``."""

    directory: Path
    origin: str
    database: str
    policy_oid: str
    max_body_bytes: int = DEFAULT_MAX_BODY
    relay_domain: str = ""
    relay_max_message_bytes: int = DEFAULT_MAX_MESSAGE
    relay_tls_cert: str = ""
    relay_tls_key: str = ""
    relay_retry_deadline: int = DEFAULT_RETRY_DEADLINE
    relay_warn_after: int = DEFAULT_WARN_AFTER
    relay_retry_initial: float = 60.0
    relay_dns_server: str = ""
    relay_mx_port: int = 25
    relay_lease: float = 600.0
    relay_idle_timeout: float = 60.0
    relay_data_timeout: float = 600.0
    relay_attempt_deadline: float = 300.0
    relay_destination_concurrency: int = 20
    relay_concurrency: int = 100
    clamd: str = ""
    ack_per_source: int = DEFAULT_ACK_PER_SOURCE
    ack_per_message: int = DEFAULT_ACK_PER_MESSAGE
    ack_window: float = DEFAULT_ACK_WINDOW
    #: The CA bundle (PEM) S/MIME acknowledgements must chain to; empty: the system store.
    ack_smime_ca: str = ""
    http_max_connections_per_peer: int = DEFAULT_HTTP_PER_PEER
    http_header_timeout: float = DEFAULT_HTTP_HEADER_TIMEOUT
    pickup_purge_every: float = DEFAULT_PICKUP_PURGE_EVERY

    @property
    def relay_dir(self) -> Path:
        return self.directory / RELAY_DIR

    @property
    def relay_cert_path(self) -> Path:
        """The relay's TLS certificate (PEM), relative paths taken from the directory."""
        return self.directory / (self.relay_tls_cert or f"{RELAY_DIR}/relay-cert.pem")

    @property
    def relay_key_path(self) -> Path:
        return self.directory / (self.relay_tls_key or f"{RELAY_DIR}/relay-key.pem")

    @property
    def relay_hostname(self) -> str:
        """The relay's mail domain: ``relay_domain``, else the origin's host part."""
        return self.relay_domain or self.origin.split("/", 1)[0].split(":", 1)[0]

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_NAME

    @property
    def vkey_path(self) -> Path:
        return self.directory / VKEY_NAME

    @property
    def tsa_dir(self) -> Path:
        return self.directory / TSA_DIR


def default_origin() -> str:
    """A log origin for this host: ``<hostname>/certmail``."""
    host = socket.gethostname() or "localhost"
    return f"{host}/certmail"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def write_config(cfg: NotaryConfig) -> None:
    """Write ``notary.toml`` (durably: temp file, fsync, rename)."""
    values = {
        "origin": cfg.origin,
        "database": cfg.database,
        "policy_oid": cfg.policy_oid,
        "max_body_bytes": cfg.max_body_bytes,
        "relay_domain": cfg.relay_hostname,
        "relay_max_message_bytes": cfg.relay_max_message_bytes,
        "relay_tls_cert": cfg.relay_tls_cert or f"{RELAY_DIR}/relay-cert.pem",
        "relay_tls_key": cfg.relay_tls_key or f"{RELAY_DIR}/relay-key.pem",
        "relay_retry_deadline": cfg.relay_retry_deadline,
        "relay_warn_after": cfg.relay_warn_after,
        "relay_retry_initial": cfg.relay_retry_initial,
        "relay_dns_server": cfg.relay_dns_server,
        "relay_mx_port": cfg.relay_mx_port,
        "relay_lease": cfg.relay_lease,
        "relay_idle_timeout": cfg.relay_idle_timeout,
        "relay_data_timeout": cfg.relay_data_timeout,
        "relay_attempt_deadline": cfg.relay_attempt_deadline,
        "relay_destination_concurrency": cfg.relay_destination_concurrency,
        "relay_concurrency": cfg.relay_concurrency,
        "clamd": cfg.clamd,
        "ack_per_source": cfg.ack_per_source,
        "ack_per_message": cfg.ack_per_message,
        "ack_window": cfg.ack_window,
        "ack_smime_ca": cfg.ack_smime_ca,
        "http_max_connections_per_peer": cfg.http_max_connections_per_peer,
        "http_header_timeout": cfg.http_header_timeout,
        "pickup_purge_every": cfg.pickup_purge_every,
    }
    text = "# certmail notary configuration (see docs/notary.md)\n" + "".join(
        f"{k} = {_toml_value(v)}\n" for k, v in values.items()
    )
    path = cfg.directory / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_config(directory: Path) -> NotaryConfig:
    """Read a notary directory's configuration; NotFoundError when there is none."""
    path = directory / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"no notary in {directory}",
            hint=f"create one: certmail notary init --dir {directory}",
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise Error(f"cannot read {path}: {e}", hint="fix or restore the file") from None
    try:
        return NotaryConfig(
            directory=directory,
            origin=str(data["origin"]),
            database=str(data.get("database") or f"sqlite:///{directory.resolve() / DB_NAME}"),
            policy_oid=str(data["policy_oid"]),
            max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY)),
            relay_domain=str(data.get("relay_domain", "")),
            relay_max_message_bytes=int(data.get("relay_max_message_bytes", DEFAULT_MAX_MESSAGE)),
            relay_tls_cert=str(data.get("relay_tls_cert", "")),
            relay_tls_key=str(data.get("relay_tls_key", "")),
            relay_retry_deadline=int(data.get("relay_retry_deadline", DEFAULT_RETRY_DEADLINE)),
            relay_warn_after=int(data.get("relay_warn_after", DEFAULT_WARN_AFTER)),
            relay_retry_initial=float(data.get("relay_retry_initial", 60.0)),
            relay_dns_server=str(data.get("relay_dns_server", "")),
            relay_mx_port=int(data.get("relay_mx_port", 25)),
            relay_lease=float(data.get("relay_lease", 600.0)),
            relay_idle_timeout=float(data.get("relay_idle_timeout", 60.0)),
            relay_data_timeout=float(data.get("relay_data_timeout", 600.0)),
            relay_attempt_deadline=float(data.get("relay_attempt_deadline", 300.0)),
            relay_destination_concurrency=int(data.get("relay_destination_concurrency", 20)),
            relay_concurrency=int(data.get("relay_concurrency", 100)),
            clamd=str(data.get("clamd", "")),
            ack_per_source=int(data.get("ack_per_source", DEFAULT_ACK_PER_SOURCE)),
            ack_per_message=int(data.get("ack_per_message", DEFAULT_ACK_PER_MESSAGE)),
            ack_window=float(data.get("ack_window", DEFAULT_ACK_WINDOW)),
            ack_smime_ca=str(data.get("ack_smime_ca", "")),
            http_max_connections_per_peer=int(
                data.get("http_max_connections_per_peer", DEFAULT_HTTP_PER_PEER)
            ),
            http_header_timeout=float(data.get("http_header_timeout", DEFAULT_HTTP_HEADER_TIMEOUT)),
            pickup_purge_every=float(data.get("pickup_purge_every", DEFAULT_PICKUP_PURGE_EVERY)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise Error(f"{path} lacks a valid setting: {e}", hint="fix or restore the file") from None


def init_notary(
    directory: Path,
    origin: str | None = None,
    *,
    database: str | None = None,
    tsa_cert: Path | None = None,
    tsa_key: Path | None = None,
    tsa_chain: Path | None = None,
    now: datetime | None = None,
    root_dir: Path | None = None,
) -> NotaryConfig:
    """Create a notary in ``directory``: keys, TSA PKI, database and config.

    A generated TSA's root CA key goes to ``root_dir`` (default
    :func:`default_root_dir`), never into ``directory``. The directory is
    made 0700, the config and the SQLite database 0600. Refuses
    (ConflictError) when the directory already holds a notary.
    """
    from keys.checkpoint_key import generate_checkpoint_key, is_valid_key_name
    from keys.tsa import generate_tsa_pki, import_tsa
    from notary.rfc3161 import DEFAULT_POLICY_OID
    from notary.storage import open_storage

    origin = origin or default_origin()
    if not is_valid_key_name(origin) or not _ORIGIN_RE.fullmatch(origin):
        raise Error(
            f"invalid origin {origin!r}",
            hint="use a schema-less URL without spaces or '+', e.g. notary.example.com/log",
        )
    if (tsa_cert is None) != (tsa_key is None) or (tsa_chain is not None and tsa_cert is None):
        raise Error(
            "--tsa-cert and --tsa-key go together (--tsa-chain needs them)",
            hint="give both, or neither to create a new TSA PKI",
        )
    if (directory / CONFIG_NAME).exists() or (directory / KEY_NAME).exists():
        raise ConflictError(
            f"{directory} already holds a notary",
            hint="refusing to overwrite its keys; choose another --dir",
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    db_path = directory.resolve() / DB_NAME  # absolute: serve may run from elsewhere
    cfg = NotaryConfig(
        directory=directory,
        origin=origin,
        database=database or f"sqlite:///{db_path}",
        policy_oid=DEFAULT_POLICY_OID,
    )
    if tsa_cert is not None and tsa_key is not None:
        import_tsa(cfg.tsa_dir, tsa_cert, tsa_key, tsa_chain, now=now)
    else:
        generate_tsa_pki(
            cfg.tsa_dir,
            common_name=f"{origin} TSA",
            now=now,
            root_dir=root_dir or default_root_dir(directory),
        )
    from keys.evidence_ca import generate_evidence_pki  # ETSI evidence key (notary/etsi/)

    generate_evidence_pki(
        directory / "evidence",
        f"{origin} Evidence",
        now=now,
        root_dir=root_dir or default_root_dir(directory),
    )
    key = generate_checkpoint_key(cfg.key_path, origin)
    cfg.vkey_path.write_text(key.vkey() + "\n", encoding="utf-8")
    from notary.relay.tls import ensure_relay_certificate

    ensure_relay_certificate(cfg, now=now)
    open_storage(cfg.database).close()
    if database is None:
        for p in (db_path, *_sidecars(db_path)):
            if p.exists():
                os.chmod(p, 0o600)  # SQLite gives its -wal and -shm the same mode
    write_config(cfg)
    return cfg


def default_root_dir(directory: Path) -> Path:
    """Where ``notary init`` puts the TSA root CA's key: ``DIR-root`` beside ``DIR``."""
    d = directory.absolute()
    return d.with_name(d.name + "-root")


def _sidecars(db: Path) -> tuple[Path, Path]:
    return db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")


def _open_to_others(path: Path) -> int | None:
    """The group/other permission bits of ``path`` (None when it does not exist)."""
    try:
        return path.stat().st_mode & 0o077
    except FileNotFoundError:
        return None


def check_permissions(cfg: NotaryConfig) -> list[str]:
    """What ``notary serve`` checks at start, as ssh does for its keys.

    Raises :class:`keys.errors.Error` when the directory or a private key
    (checkpoint, TSA, relay TLS) is open to group or others; answers warnings
    for the config and the SQLite database (readable only through the
    directory, so a warning), and for a TSA root CA key left in the serving
    directory.
    """
    from keys.tsa import ROOT_KEY, TSA_KEY

    refuse = [cfg.directory, cfg.key_path, cfg.tsa_dir / TSA_KEY, cfg.relay_key_path]
    refuse.append(cfg.directory / "evidence" / "evidence-key.pem")  # ETSI evidence key
    for p in refuse:
        bits = _open_to_others(p)
        if bits:
            fix = "700" if p == cfg.directory else "600"
            raise Error(
                f"{p} is accessible by others (mode {p.stat().st_mode & 0o777:o})",
                hint=f"chmod {fix} {p}",
            )
    warnings = []
    files = [cfg.directory / CONFIG_NAME]
    if cfg.database.startswith("sqlite:///"):
        db = Path(cfg.database.removeprefix("sqlite:///"))
        files += [db, *_sidecars(db)]
    for p in files:
        if _open_to_others(p):
            warnings.append(f"{p} is readable by others: chmod 600 {p}")
    if (cfg.tsa_dir / ROOT_KEY).exists():
        warnings.append(
            f"the TSA root CA key {cfg.tsa_dir / ROOT_KEY} is in the serving directory: "
            "move it offline (serving does not need it)"
        )
    return warnings
