"""``certmail proof verify`` without Click: the command's body, and a fast path for it.

A fresh ``certmail proof verify`` process should take well under 300 ms, and
importing Click costs a large part of that. :func:`parse_fast` accepts the
command's plain forms (one BUNDLE, ``--vkey``, ``--tsa-root``, ``--gnupghome``,
``--trust-bundle-key``, ``--trust-bundle-root``, ``--allow-partial``, ``--json``);
anything else
(``--help``, an unknown or repeated option, a path Click would refuse) returns
None and the caller runs Click, so usage errors stay Click's. :func:`run_verify`
is the command itself; the Click command in :mod:`certmail.cli.proof` calls it
too. A valid bundle checked only against its own notary key or TSA root exits 3
unless ``--trust-bundle-key`` / ``--trust-bundle-root`` accepts that; one where some
checks could not run ("valid, but N checks could not run") exits 3 unless
``--allow-partial``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, NamedTuple

from keys.errors import Error, NotFoundError

_WARN = "certmail: warning: "
_PATH_OPTIONS = {"--vkey": "vkey_file", "--tsa-root": "tsa_root", "--gnupghome": "gnupghome"}
_FLAGS = ("--json", "--trust-bundle-key", "--trust-bundle-root", "--allow-partial")


class VerifyArgs(NamedTuple):
    bundle: Path
    vkey_file: Path | None
    tsa_root: Path | None
    gnupghome: Path | None
    as_json: bool
    home: Path | None = None  # the certmail home whose keyring is the default --gnupghome
    trust_bundle_key: bool = False  # accept the bundle's own notary.vkey without --vkey
    trust_bundle_root: bool = False  # accept the root ending tsa-chain.pem without --tsa-root
    allow_partial: bool = False  # exit 0 although some checks could not run
    witnesses: tuple[str, ...] = ()  # --witness VKEY (or a file holding one)
    witnesses_file: Path | None = None  # --witnesses FILE: one vkey a line, or witnesses.toml
    quorum: int | None = None  # --quorum N (default: every witness given)
    anchor_roots: tuple[Path, ...] = ()  # --anchor-root PEM: outside TSAs' roots (format 4)
    smime_ca: Path | None = None  # --smime-ca PEM: the S/MIME CAs you trust (format 6)


def _path_ok(value: str, *, want_dir: bool) -> bool:
    """True when Click's Path type (exists=False) would accept ``value`` unchanged."""
    if not value:
        return False
    try:
        st = os.stat(value)
    except (OSError, ValueError):
        return True  # missing: accepted; the command reports it
    if want_dir and stat.S_ISREG(st.st_mode):
        return False
    if not want_dir and stat.S_ISDIR(st.st_mode):
        return False
    return os.access(value, os.R_OK)


def parse_fast(args: list[str]) -> VerifyArgs | None:
    """The arguments after ``proof verify`` when they are in a plain form; else None."""
    got: dict[str, str] = {}
    bundle: str | None = None
    flags: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a in _FLAGS:
            if a in flags:
                return None
            flags.add(a)
            continue
        name, eq, value = a.partition("=")
        if name in _PATH_OPTIONS:
            if not eq:
                if i >= len(args):
                    return None
                value = args[i]
                i += 1
            key = _PATH_OPTIONS[name]
            if key in got or value.startswith("-"):
                return None
            got[key] = value
            continue
        if a.startswith("-") or bundle is not None:
            return None
        bundle = a
    if bundle is None:
        return None
    for key, value in [("bundle", bundle), *got.items()]:
        if not _path_ok(value, want_dir=key == "gnupghome"):
            return None

    def path(key: str) -> Path | None:
        return Path(got[key]) if key in got else None

    return VerifyArgs(
        Path(bundle),
        path("vkey_file"),
        path("tsa_root"),
        path("gnupghome"),
        "--json" in flags,
        trust_bundle_key="--trust-bundle-key" in flags,
        trust_bundle_root="--trust-bundle-root" in flags,
        allow_partial="--allow-partial" in flags,
    )


def _echo(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _smime_ca(path: Path | None) -> Path | None:
    """--smime-ca FILE: a readable file of PEM certificates."""
    if path is None:
        return None
    _pem_certificates(path, "--smime-ca")  # a clear error for a missing or bad file
    return path


def run_verify(a: VerifyArgs) -> None:
    """Check a proof bundle offline and print the report; VerificationError when invalid,
    or when valid but checked only against its own notary key or TSA root and the user
    did not accept that (``--trust-bundle-key``, ``--trust-bundle-root``)."""
    from certmail.bundle import verify_bundle

    vkey = None
    if a.vkey_file is not None:
        try:
            vkey = a.vkey_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise NotFoundError(
                f"no such file: --vkey {a.vkey_file}",
                hint="give the notary's verifier key file (notary.vkey)",
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise Error(f"cannot read --vkey {a.vkey_file}: {e}") from None
    roots = None if a.tsa_root is None else _pem_certificates(a.tsa_root, "--tsa-root")
    anchor_roots = [c for p in a.anchor_roots for c in _pem_certificates(p, "--anchor-root")]
    keyring = _keyring(a.gnupghome, a.home)
    witnesses = _witnesses(a)
    if a.quorum is not None and not 1 <= a.quorum <= len(witnesses):
        raise Error(
            f"--quorum {a.quorum} with {len(witnesses)} witness key(s) can never be met",
            hint="give --witness VKEY (or --witnesses FILE) for at least N witnesses",
        )
    report = verify_bundle(
        a.bundle,
        vkey=vkey,
        tsa_roots=roots,
        keyring=keyring,
        witnesses=witnesses,
        quorum=a.quorum,
        anchor_roots=anchor_roots or None,
        smime_ca=_smime_ca(a.smime_ca),
    )
    for w in report.warnings:
        _echo(_WARN + w, err=True)
    _require_anchors(report, a)
    _require_complete(report, a)
    if a.as_json:
        _echo(json.dumps(report.to_json()))
        return
    _table(report)


def _pem_certificates(path: Path, option: str) -> list[Any]:
    """The certificates of a PEM file given as ``option``; a clear error otherwise."""
    from cryptography import x509

    from keys.errors import MalformedError

    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {option} {path}") from None
    except OSError as e:
        raise Error(f"cannot read {option} {path}: {e.strerror or e}") from None
    except ValueError:
        raise MalformedError(f"{option} {path} holds no PEM certificates") from None


def _witnesses(a: VerifyArgs) -> list[Any]:
    """The witness keys of --witness (a vkey, or a file holding one) and --witnesses FILE
    (one vkey a line, ``#`` comments; or a notary's witnesses.toml), parsed strictly."""
    if not a.witnesses and a.witnesses_file is None:
        return []  # the fast path imports nothing more
    from keys.errors import MalformedError
    from notary.cosignature import CosignatureVerifier

    given = [(f"--witness {w}", w) for w in a.witnesses]
    if a.witnesses_file is not None:
        for n, line in enumerate(_witness_lines(a.witnesses_file), start=1):
            given.append((f"--witnesses {a.witnesses_file} line {n}", line))
    out: list[Any] = []
    for where, text in given:
        if "+" not in text and Path(text).is_file():
            text = _read(Path(text), "--witness").strip()
        try:
            v = CosignatureVerifier.from_vkey(text)
        except MalformedError as e:
            raise MalformedError(
                f"{where[:200]}: {e.message}", hint="a witness's witness.vkey: name+keyid+base64"
            ) from None
        if any(o.name == v.name for o in out):
            raise Error(f"{where[:200]}: witness {v.name} given twice")
        out.append(v)
    return out


def _witness_lines(path: Path) -> list[str]:
    import tomllib

    text = _read(path, "--witnesses")
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        cfg = None
    if isinstance(cfg, dict) and isinstance(cfg.get("witness"), list):
        return [str(w.get("vkey", "")) for w in cfg["witness"] if isinstance(w, dict)]
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln]


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {option} {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Error(f"cannot read {option} {path}: {e}") from None


def _require_anchors(report: Any, a: VerifyArgs) -> None:
    """A bundle that is only consistent with itself proves nothing: refuse it (exit 3)
    unless the user said they accept the bundle's own notary key and TSA root."""
    from keys.errors import VerificationError

    if not report.vkey_trusted and not a.trust_bundle_key:
        raise VerificationError(
            f"{a.bundle}: not verified against a trusted notary key "
            "(the bundle is consistent with its own notary.vkey, which a forger could replace)",
            hint="pass --vkey with the notary's key from a source you trust "
            "(the operator, or GET /v1/vkey), or --trust-bundle-key to accept the bundle's own",
        )
    if not report.tsa_root_trusted and not a.trust_bundle_root:
        raise VerificationError(
            f"{a.bundle}: not verified against a trusted TSA root "
            "(the time-stamps chain to the root in the bundle's own tsa-chain.pem)",
            hint="pass --tsa-root with the TSA's root from a source you trust "
            "(the operator, or GET /v1/tsa/chain), "
            "or --trust-bundle-root to accept the bundle's own",
        )


def _require_complete(report: Any, a: VerifyArgs) -> None:
    """Exit 3 when some checks could not run, unless ``--allow-partial``."""
    from keys.errors import VerificationError

    if not report.unchecked or a.allow_partial:
        return
    items = "; ".join(f"{c.item}: {c.detail}" for c in report.unchecked)
    raise VerificationError(
        f"{a.bundle}: {report.verdict} ({items})",
        hint="--allow-partial accepts a bundle whose present items all verified; "
        "--gnupghome DIR with the sender's and recipients' keys runs the OpenPGP checks",
    )


def _keyring(gnupghome: Path | None, certmail_home: Path | None = None) -> Any:
    if gnupghome is None:
        home = _default_gnupghome(certmail_home)
        if home is None or not home.is_dir():
            return None
        gnupghome = home
    elif not gnupghome.is_dir():
        raise Error(f"no such GnuPG home: {gnupghome}")
    return _LazyKeyring(gnupghome)


class _LazyKeyring:
    """A :class:`keys.gpg.Keyring` made on first use: most bundles need no OpenPGP check,
    and making one imports GnuPG support and runs ``gpg --version``."""

    def __init__(self, gnupghome: Path) -> None:
        self._gnupghome = gnupghome
        self._keyring: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._keyring is None:
            from keys.gpg import Keyring

            self._keyring = Keyring(self._gnupghome)
        return getattr(self._keyring, name)


def _default_gnupghome(certmail_home: Path | None = None) -> Path | None:
    """The certmail keyring's directory, as ``load_settings(home).gnupghome`` gives it;
    without reading the settings when the home (``--home`` or CERTMAIL_HOME) is given and
    has no keyring (nothing to find)."""
    home = str(certmail_home) if certmail_home is not None else os.environ.get("CERTMAIL_HOME")
    if home and not (Path(home).expanduser() / "gnupg").is_dir():
        return None
    from certmail.config import load_settings

    try:
        return load_settings(certmail_home).gnupghome
    except Error:
        return None


def _table(report: Any) -> None:
    if not sys.stdout.isatty():
        _plain(report)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Everything from the bundle is untrusted: Text(), never markup.
    out = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    out.print(Text(f"message {report.message_id}  sha256 {report.sha256}"))
    out.print(Text(f"from {report.sender}  to {', '.join(report.recipients) or '-'}"))
    table = Table(show_lines=False)
    for col in ("No", "Time (UTC)", "Event", "Recipient", "Index", "Time-stamp", "Proves"):
        table.add_column(col)
    for e in report.events:
        weak = e.event == "ContentAccessTracking"
        table.add_row(
            Text(f"{e.number:02d}"),
            Text(e.time),
            Text(e.event),
            Text(e.recipient or ""),
            Text(str(e.index)),
            Text(e.timestamp or ""),
            Text(e.proves, style="yellow" if weak else ""),
        )
    out.print(table)
    for line in _scan_lines(report):
        out.print(Text(line))
    checks = Table(show_header=True)
    checks.add_column("Check")
    checks.add_column("Result")
    checks.add_column("Detail")
    colour = {"ok": "green", "warning": "yellow", "skipped": "dim"}
    for c in report.checks:
        checks.add_row(Text(c.item), Text(c.status, style=colour.get(c.status, "")), Text(c.detail))
    out.print(checks)
    out.print(
        Text(
            _verdict(report),
            style="bold green" if _verdict(report) == "valid" else "bold yellow",
        )
    )


def _scan_lines(report: Any) -> list[str]:
    """Each acknowledgement's virus-scan verdicts, labelled with who asserted them."""
    if not any(e.scans for e in report.events):
        return []  # certmail.scanverdicts imported only for verdicts to print
    from certmail.scanverdicts import sentences

    return [
        _clean(f"{e.number:02d} {line}") for e in report.events for line in sentences(e.scans or [])
    ]


def _verdict(report: Any) -> str:
    """The last line: ``valid``, ``valid, but N checks could not run``, and the warnings."""
    if not report.warnings:
        return str(report.verdict)
    return f"{report.verdict}, with warnings (see stderr)"


def _clean(text: str) -> str:
    """Untrusted text for a terminal or a pipe: control characters shown escaped."""
    if text.isprintable():
        return text  # nothing to escape (the common case: no pass over each character)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _plain(report: Any) -> None:
    """The same report as aligned plain text (stdout is not a terminal: no rich needed)."""

    def grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
        rows = [tuple(_clean(c) for c in r) for r in rows]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]
        ]

    lines = [
        _clean(f"message {report.message_id}  sha256 {report.sha256}"),
        _clean(f"from {report.sender}  to {', '.join(report.recipients) or '-'}"),
        "",
    ]
    lines += grid(
        ("No", "Time (UTC)", "Event", "Recipient", "Index", "Time-stamp", "Proves"),
        [
            (
                f"{e.number:02d}",
                e.time,
                e.event,
                e.recipient or "",
                str(e.index),
                e.timestamp or "",
                e.proves,
            )
            for e in report.events
        ],
    )
    lines += _scan_lines(report)
    lines.append("")
    lines += grid(
        ("Check", "Result", "Detail"), [(c.item, c.status, c.detail) for c in report.checks]
    )
    lines += ["", _verdict(report)]
    _echo("\n".join(lines))
