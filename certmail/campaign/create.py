"""``campaign create``: check everything a campaign needs, then record it (nothing is sent).

Every row, every template field, every recipient's key and every attachment is
checked first, and all problems are reported together with their CSV line, so a
campaign that is created can be sent. Attachments are scanned here, once per
campaign, and copied (with their SHA-256) into ``HOME/campaigns/NAME/``: what
is sent later is exactly what was scanned.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error, NotFoundError

from ..compose import new_message_id
from . import passphrases
from .keychecks import key_checks, with_located
from .recipients import Problem, Row, read_rows
from .smime_trust import campaign_trust
from .store import Campaign, CampaignStore
from .templates import Template, parse

if TYPE_CHECKING:
    from ..api import Certmail

__all__ = [
    "CampaignInputError",
    "CampaignOptions",
    "CreateResult",
    "campaign_dir",
    "create_campaign",
]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BODY = 1 << 20
#: How long the notary keeps a pickup message (seconds after it is sealed), as send's.
PICKUP_EXPIRES = 14 * 86400
#: How long the notary keeps a sealed message's share (seconds after it is sealed), as send's.
SEAL_EXPIRES = 14 * 86400


class CampaignInputError(Error):
    """Rows of the CSV (or the templates) are wrong: nothing was created or sent."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(
            f"{first}{more}; nothing was created or sent",
            hint="fix the rows listed, then run campaign create again",
        )


@dataclass
class CreateResult:
    campaign: Campaign
    recipients: int
    columns: list[str]
    fields: list[str]
    attachments: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    pickup: list[str] = field(default_factory=list)  # recipients without a key: a link
    sealed: bool = False  # the others' content released only against their signed ack
    located: list[dict[str, Any]] = field(default_factory=list)  # keys found (keys locate)
    pickup_passphrase: bool = False  # the pickup page also asks for the campaign's passphrase
    smime: bool = False  # S/MIME (docs/smime.md), not OpenPGP
    own_passphrases: int = 0  # pickup recipients with their own (the CSV's pickup_passphrase)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.campaign.to_json(),
            "sealed": self.sealed,
            "smime": self.smime,
            "recipients": self.recipients,
            "columns": self.columns,
            "fields": self.fields,
            "attachments": self.attachments,
            "warnings": self.warnings,
            "pickup": self.pickup,
            "pickup_passphrase": self.pickup_passphrase,
            "pickup_passphrases": self.own_passphrases,
            "located": self.located,
        }


@dataclass(frozen=True)
class CampaignOptions:
    """How a campaign's messages are to be sent (``campaign create``'s options, kept in
    its spec).

    ``via``: ``relay`` or ``smtp`` (None: as ``send`` chooses). ``track_open``: a
    tracking link per recipient; ``request_mdn``: ask for RFC 8098 read receipts.
    ``pickup_if_no_key``: a recipient without a key gets a link to the notary's
    pickup page (docs/sealed.md "Pickup"), kept ``pickup_expires`` seconds after
    its message is sealed, instead of being refused. ``sealed``: every other
    recipient's content is sealed (docs/sealed.md), the notary keeping K_n
    ``seal_expires`` seconds after the message is sealed. ``locate_keys``: the
    recipients the keyring has no key for are looked up first as ``certmail keys
    locate`` does (:func:`locate_missing`; not with ``smime``). ``pickup_passphrase``:
    the pickup page also asks for it; the campaign keeps only its salt and verifier hash
    (:func:`certmail.sealed.pickup_sending.passphrase_check`), and ``campaign
    send`` must be given it again. ``smime``: every message is
    signed with the home's S/MIME key and encrypted to the recipient's certificate and
    to the sender's, as ``send --smime`` does (docs/smime.md)."""

    via: str | None = None
    track_open: bool = False
    request_mdn: bool = False
    pickup_if_no_key: bool = False
    pickup_expires: int = PICKUP_EXPIRES
    sealed: bool = False
    seal_expires: int = SEAL_EXPIRES
    locate_keys: bool = True
    pickup_passphrase: bytes | None = field(default=None, repr=False)  # never in a repr
    smime: bool = False


def campaign_dir(home: Path, name: str) -> Path:
    return home / "campaigns" / name


def _check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise Error(
            f"not a campaign name: {name!r}",
            hint="letters, digits, '.', '_' and '-' (up to 64), e.g. notice-2026-12",
        )


def _body(path: Path) -> str:
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}", hint="give --body-file TEMPLATE")
    if path.stat().st_size > MAX_BODY:
        raise Error(f"{path} is larger than 1 MiB", hint="put long content in an attachment")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise Error(f"{path} is not UTF-8", hint="save the body template as UTF-8") from None
    if not text.strip():
        raise Error(f"{path} is empty", hint="write the notice in the body template")
    return text


def _render_checks(rows: list[Row], subject: Template, body: Template) -> list[Problem]:
    out = []
    for r in rows:
        s = subject.render(r.fields)
        if not s.strip() or "\r" in s or "\n" in s:
            out.append(
                Problem(
                    r.line,
                    "the subject is empty or has a line break here",
                    "check the columns the subject uses",
                )
            )
        body.render(r.fields)
    return out


def _attachments(
    cm: Certmail, paths: Sequence[Path], dest: Path, warnings: list[str]
) -> list[dict[str, Any]]:
    for p in paths:
        if not p.is_file():
            raise NotFoundError(f"no such file: {p}", hint="check the --attach path")
        if p.stat().st_size == 0:
            raise Error(
                f"{p.name} is empty (0 bytes); nothing was created or sent",
                hint="attach the file that holds the notice",
            )
    scanned = cm.scan_attachments(
        list(paths), require_scan=bool(cm.settings.require_scan), warnings=warnings
    )
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for i, (p, rec) in enumerate(scanned):
        target = dest / f"{i:02d}" / p.name
        target.parent.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(p, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        out.append(
            {
                "path": str(target),
                "name": p.name,
                "size": target.stat().st_size,
                "sha256": digest,
                "scan": rec.to_json(),
            }
        )
    return out


def _check_notary(cm: Certmail, option: str, why: str) -> None:
    if not cm.settings.notary_url:
        raise Error(
            f"{option} needs a notary ({why}); nothing was created or sent",
            hint="set CERTMAIL_NOTARY_URL",
        )


def _check_pickup(cm: Certmail, via: str, warnings: list[str], passphrase: bool) -> None:
    """Pickup needs a notary; through its relay the notary carries the link (a warning,
    unless the page also asks for a passphrase)."""
    _check_notary(cm, "--pickup-if-no-key", "it keeps the content until picked up")
    if via == "relay" and not passphrase:
        warnings.append(
            "the notary's relay carries the pickup links, so the notary could read the "
            "content of the pickup messages; --pickup-passphrase-file or --via smtp "
            "prevents that"
        )


def _check_new(ledger: Path, name: str) -> None:
    with CampaignStore(ledger) as store:
        if any(c.name == name for c in store.all()):
            from keys.errors import ConflictError

            raise ConflictError(
                f"a campaign named {name!r} exists",
                hint="choose another name, or: certmail campaign list",
            )


def _check_options(cm: Certmail, name: str, opts: CampaignOptions) -> None:
    """The options' own checks, before any row is read."""
    _check_name(name)
    if opts.pickup_passphrase is not None and not opts.pickup_if_no_key:
        raise Error(
            "--pickup-passphrase-file needs --pickup-if-no-key; nothing was created or sent",
            hint="add --pickup-if-no-key, or leave the passphrase out",
        )
    if opts.sealed:
        _check_notary(cm, "--sealed", "it keeps each message's key share")
    if opts.smime:
        from .smime_checks import check_smime_sender

        check_smime_sender(cm)


def _check_columns(subject: Template, body: Template, columns: list[str]) -> None:
    """Every field the templates name is a column of the CSV."""
    unknown = sorted((subject.fields | body.fields) - set(columns))
    if unknown:
        raise Error(
            f"the templates name {', '.join(unknown)}, not a column of the CSV "
            f"(columns: {', '.join(columns)}); nothing was created or sent",
            hint="fix the template or add the column",
        )


def _recipient_keys(
    cm: Certmail, rows: list[Row], opts: CampaignOptions
) -> tuple[dict[str, str], list[Problem], list[str], list[dict[str, Any]]]:
    """Each row's key (or certificate), the problems, the pickup list and the keys found
    by the lookup (``keys locate``'s, OpenPGP only)."""
    pickup_if_no_key = opts.pickup_if_no_key
    if opts.smime:
        keys, problems, pickup = key_checks(
            cm, rows, pickup_if_no_key, smime=True, sealed=opts.sealed
        )
        return keys, problems, pickup, []
    if opts.locate_keys:
        return with_located(cm, rows, pickup_if_no_key)
    keys, problems, pickup = key_checks(cm, rows, pickup_if_no_key)
    return keys, problems, pickup, []


def _pickup_passphrase_check(
    cm: Certmail,
    chosen: str,
    warnings: list[str],
    pickup: list[str],
    pickup_passphrase: bytes | None,
    own: dict[str, bytes],
) -> dict[str, Any] | None:
    """With recipients by pickup link: the notary's pickup checked, and the passphrase's
    salt and verifier hash (never the passphrase) when one was given (``own``: the
    recipients' own passphrases)."""
    if not pickup:
        if pickup_passphrase is not None:
            warnings.append("every recipient has a key: the pickup passphrase is not used")
        return None
    every = pickup_passphrase is not None or all(a in own for a in pickup)
    _check_pickup(cm, chosen, warnings, every)
    if pickup_passphrase is None:
        return None
    from ..sealed.pickup_sending import passphrase_check

    return passphrase_check(pickup_passphrase)


def _via(cm: Certmail, opts: CampaignOptions, rows: list[Row], warnings: list[str]) -> str:
    """The way the messages go (relay or smtp), its settings checked as send checks them."""
    from ..outbox import Outbox
    from ..sendcheck import check_send_settings

    settings = cm.settings
    chosen = Outbox(settings, lambda: cm.ledger, cm.notary).choose_via(opts.via, True, warnings)
    check_send_settings(settings, chosen, [rows[0].email] if rows else ["x@example.org"], [])
    return chosen


def create_campaign(
    cm: Certmail,
    name: str,
    *,
    recipients: Path,
    subject: str,
    body_file: Path,
    attachments: Sequence[Path] = (),
    options: CampaignOptions | None = None,
) -> CreateResult:
    """Check the whole campaign (CampaignInputError lists bad rows), then record it; how
    its messages are to be sent is ``options`` (:class:`CampaignOptions`)."""
    opts = options or CampaignOptions()
    _check_options(cm, name, opts)
    settings = cm.settings
    home_dir = campaign_dir(settings.home, name)
    _check_new(settings.ledger_path, name)
    subj, body = parse(subject, "subject"), parse(_body(body_file), "body")
    columns, rows, problems = read_rows(recipients)
    _check_columns(subj, body, columns)
    passphrases.check_column(columns, subj.fields | body.fields, opts.pickup_if_no_key)
    rows, own, bad = passphrases.split(rows)  # the cells never stored
    warnings: list[str] = []
    chosen = _via(cm, opts, rows, warnings)
    problems += _render_checks(rows, subj, body)
    keys, key_problems, pickup, located = _recipient_keys(cm, rows, opts)
    problems += key_problems + bad
    if problems:
        raise CampaignInputError(sorted(problems, key=lambda p: p.line))
    check = _pickup_passphrase_check(cm, chosen, warnings, pickup, opts.pickup_passphrase, own)
    derived = passphrases.derive(own, pickup, warnings)  # by address: salt, P, verifier hash
    atts = _attachments(cm, attachments, home_dir / "attachments", warnings)
    (home_dir / "body.txt").write_text(body.source, encoding="utf-8")
    domain = (settings.email or "").rpartition("@")[2].lower()
    spec = {
        "via": chosen,
        "subject": subject,
        "body": str(home_dir / "body.txt"),
        "attachments": atts,
        "track_open": opts.track_open,
        "request_mdn": opts.request_mdn,
        "keys": keys,
        "columns": columns,
        "pickup": sorted(pickup),
        "pickup_expires": opts.pickup_expires,
        "pickup_passphrase": check,  # its salt and verifier hash, never the passphrase
        "sealed": opts.sealed,
        "seal_expires": opts.seal_expires,
        "smime": opts.smime,
        "smime_trust": campaign_trust(cm, home_dir) if opts.smime else None,  # CA copy, CRL
    }
    with CampaignStore(settings.ledger_path) as store:
        made = [(r.line, r.email, r.fields, new_message_id(domain)) for r in rows]
        c = store.create(name, spec, made, pickup_keys=derived)
    fields = sorted(subj.fields | body.fields)
    return CreateResult(
        c,
        len(rows),
        columns,
        fields,
        atts,
        warnings,
        sorted(pickup),
        opts.sealed,
        located,
        check is not None,
        opts.smime,
        len(derived),
    )
