"""``certmail proof export|verify``: proof bundles (DESIGN §4.5, docs/proof-bundle.md).

``export`` takes a message from the sender's ledger (its exact stored bytes) and
the receipts the ledger kept, fetches its latest receipts, the notary's verifier
key, the TSA chain and the consistency proofs between the checkpoints the
receipts use, and writes the
zip. ``verify`` checks a bundle offline: exit 0 when valid, 3 when not (its body
is in :mod:`certmail.cli.proof_verify`, which the entry point also runs without
Click for speed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from certmail.cli.app import App, home_option, json_option, pass_app
from certmail.cli.options import anchor_root_option, tsa_root_option, vkey_option
from keys.errors import Error

if TYPE_CHECKING:
    from certmail.bundle.zipio import FileMember
    from certmail.notary_client import NotaryClient
    from notary.mime import Buffer


@click.group("proof")
def proof() -> None:
    """Export and verify proof bundles (*.certmail-proof.zip).

    \b
    Examples:
      certmail proof export 3f2a9c1e -o sent.certmail-proof.zip
      certmail proof verify sent.certmail-proof.zip --vkey notary.vkey --tsa-root root.pem
    """


@proof.command("export")
@click.argument("ref", metavar="SHA256|MESSAGE-ID")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the bundle (.certmail-proof.zip).",
)
@click.option(
    "--reveal-subject",
    is_flag=True,
    help="Show the Subject: in certificate.html/.pdf (hidden by default).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option(
    "--keep-all-acks",
    is_flag=True,
    help="Keep acknowledgements signed by a key that is not the recipient's "
    "(left out by default: such a bundle fails verification).",
)
@click.option(
    "--for",
    "for_recipient",
    metavar="ADDRESS",
    help="Make the bundle for this blind-copy (Bcc) recipient: keep its evidence "
    "(left out by default, so no bundle shows a blind copy to the others).",
)
@click.option(
    "--etsi",
    is_flag=True,
    help="Add the notary's ETSI EN 319 522 evidence (evidence/NN-<event>.xml, docs/etsi.md).",
)
@json_option("Print a JSON summary on stdout.")
@home_option
@pass_app
def export(
    app: App,
    ref: str,
    output: Path,
    reveal_subject: bool,
    force: bool,
    keep_all_acks: bool,
    for_recipient: str | None,
    etsi: bool,
) -> None:
    """Write the proof bundle of a sent message, with its latest receipts from the notary.

    Acknowledgements (ContentHandover) are checked against the recipients' keys in
    your keyring, the keys you encrypted to: one signed by another key (anyone can
    post an acknowledgement naming a recipient; the notary logs what it is given)
    is left out with a warning, unless --keep-all-acks.
    """
    from keys.errors import ConflictError

    if output.exists() and not force:
        raise ConflictError(f"{output} exists", hint="choose another -o or pass --force")
    settings = app.settings()
    if not settings.notary_url:
        raise Error(
            "no notary configured", hint="set CERTMAIL_NOTARY_URL and CERTMAIL_NOTARY_TOKEN"
        )
    from certmail.bundle.zipio import FileMember
    from certmail.cli.files import new_file
    from certmail.cli.proof_subject import revealed_subject
    from certmail.mime import FileBuffer

    entry, path, kept = _ledger_copy(settings, ref)
    protected = revealed_subject(path, settings) if reveal_subject else None
    with path.open("rb") as stored, new_file(output, force) as out:  # never whole in memory
        message = FileMember(FileBuffer(stored.fileno()))
        size, events, left_out = _build(
            out,
            settings,
            entry,
            message,
            kept,
            keep_all_acks,
            reveal_subject,
            protected,
            for_recipient,
            etsi,
        )
    _report(app, output, entry, events, size, left_out)


def _ledger_copy(settings: Any, ref: str) -> tuple[Any, Path, list[dict[str, Any]]]:
    """The ledger's entry for ``ref``, its stored copy (the exact bytes) and the receipts
    the ledger kept."""
    from certmail.ledger import Ledger

    with Ledger(settings.ledger_path, settings.outbox_dir, settings.sent_dir) as ledger:
        entry = ledger.find(ref)
        path = ledger.message_path(entry.sha256)
        kept = ledger.receipts(entry.sha256)
    return entry, path, kept


def _all_receipts(client: Any, entry: Any, kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notary's receipts for the message, and the older ones the ledger kept (each
    event's own checkpoint) where they verify against this notary's key (a ledger may
    hold some from a notary used before)."""
    from keys.errors import MalformedError, VerificationError

    receipts: list[dict[str, Any]] = client.receipts(entry.sha256)
    for r in receipts:
        client.check_receipt(r, entry.sha256, entry.message_id)
    for r in kept:
        try:
            client.check_receipt(r, entry.sha256, entry.message_id)
        except (VerificationError, MalformedError):
            continue
        receipts.append(r)
    return receipts


def _getter(client: NotaryClient) -> Any:
    """GET on the notary's public API through ``client``'s one HTTP client: TemporaryError
    when it is down or answers 5xx, NotaryRequestError for 4xx."""
    import httpx

    from certmail.errors import NotaryRequestError
    from certmail.notary_client import http_failure
    from keys.errors import TemporaryError

    url = client.url

    def get(path: str, **params: int) -> httpx.Response:
        try:
            resp = client.http.get(url + path, params=params, timeout=30.0)
        except httpx.HTTPError as e:
            raise TemporaryError(f"cannot reach the notary at {url}: {http_failure(e)}") from None
        if resp.status_code >= 500:
            raise TemporaryError(f"the notary answered {resp.status_code} for {path}")
        if resp.status_code >= 400:
            raise NotaryRequestError(f"the notary refused {path}: {resp.status_code}")
        return resp

    return get


def _build(
    out: BinaryIO,
    settings: Any,
    entry: Any,
    message: FileMember,
    kept: list[dict[str, Any]],
    keep_all_acks: bool,
    reveal_subject: bool,
    protected: str | None,
    for_recipient: str | None = None,
    etsi: bool = False,
) -> tuple[int, int, list[dict[str, str]]]:
    """The bundle written to ``out``: its size, its number of events and the
    acknowledgements left out."""
    import base64

    from certmail.bundle.export import write_bundle
    from certmail.bundle.mdns import kept_read_receipts
    from certmail.notary_client import NotaryClient

    with NotaryClient(settings.notary_url, settings.notary_token) as client:
        receipts = _all_receipts(client, entry, kept)
        receipts, left_out, ack_keys = _judge_acks(receipts, settings, keep_all_acks)
        mdns, mdn_keys = kept_read_receipts(settings.ledger_path, entry.sha256)  # format 4
        vkey = client.vkey()
        get = _getter(client)
        chain = get("/v1/tsa/chain").content

        def consistency(old: int, new: int) -> list[bytes]:
            body = get("/v1/proof/consistency", old=old, new=new).json()
            return [base64.b64decode(h, validate=True) for h in body["proof"]]

        size = write_bundle(
            out,
            message,
            receipts,
            vkey=vkey,
            tsa_chain_pem=chain,
            consistency=consistency,
            reveal_subject=reveal_subject,
            protected_subject=protected,
            keys=_bundle_keys(message.buf, settings, ack_keys + mdn_keys),
            for_recipient=for_recipient,
            mdns=mdns,
            **(_etsi_evidence(client, entry.sha256) if etsi else {}),
            anchored=lambda size: _anchored(get, size),
        )
    return size, len({r.get("entry") for r in receipts}), left_out


def _anchored(get: Any, size: int) -> dict[str, Any] | None:
    """The notary's outside time-stamps over its smallest checkpoint of at least ``size``
    entries (``GET /v1/anchors``); None when it has none (or no such route)."""
    from certmail.errors import NotaryRequestError

    try:
        body = get("/v1/anchors", size=size).json()
    except NotaryRequestError:
        return None
    return body if isinstance(body, dict) else None


def _etsi_evidence(client: Any, sha256: str) -> dict[str, Any]:
    """The notary's ETSI evidence XMLs, evidence chain and signed certificate.pdf."""
    body = client.request("GET", f"/v1/messages/{sha256}/evidence?format=etsi").json()
    items = body.get("evidence") if isinstance(body, dict) else None
    xmls = [
        e["xml"].encode("utf-8")
        for e in (items if isinstance(items, list) else [])
        if isinstance(e, dict) and isinstance(e.get("xml"), str)
    ]
    chain = client.request("GET", "/v1/evidence/chain", auth=False).content
    pdf = client.request("GET", f"/v1/messages/{sha256}/certificate.pdf").content
    return {"etsi": xmls, "etsi_chain_pem": chain, "etsi_pdf": pdf}


def _bundle_keys(
    message: Buffer, settings: Any, ack_keys: list[tuple[str, str]]
) -> dict[str, bytes]:
    """The keys/ members: the sender's key (the keyring's for the From: address) and the
    key of each acknowledgement judged to be by the recipient's key."""
    from email.parser import BytesHeaderParser
    from email.utils import parseaddr

    from certmail.bundle.pgpkeys import export_keys
    from keys.errors import NotFoundError
    from keys.gpg import Keyring

    if not Path(settings.gnupghome).is_dir():
        return {}
    end = message.find(b"\r\n\r\n")  # the header only: the body may be 100s of MB
    header = BytesHeaderParser().parsebytes(message[: end if end >= 0 else 64 << 10])
    addr = parseaddr(str(header.get("From", "")))[1].lower()
    sender = None
    if addr:
        try:
            sender = (Keyring(settings.gnupghome).key_for(addr).fingerprint, addr)
        except (NotFoundError, Error):
            sender = None
    return export_keys(Path(settings.gnupghome), sender, ack_keys)


def _report(
    app: App, output: Path, entry: Any, events: int, size: int, left_out: list[dict[str, str]]
) -> None:
    for lo in left_out:
        click.echo(
            f"certmail: warning: left out an acknowledgement for {lo['recipient']}: "
            f"{lo['reason']} (--keep-all-acks keeps it)",
            err=True,
        )
    if app.as_json:
        summary = {
            "bundle": str(output),
            "sha256": entry.sha256,
            "message_id": entry.message_id,
            "events": events,
            "size": size,
            "left_out": left_out,
        }
        click.echo(json.dumps(summary))
        return
    click.echo(f"certmail: wrote {output} ({events} events, {size} bytes)", err=True)
    click.echo(str(output))


def _smime_of(settings: Any) -> Any:
    """The S/MIME context S/MIME acknowledgements are judged with (the CA bundle)."""
    from certmail.smime.opening import smime_context

    return smime_context(settings, None, None)


def _judge_acks(
    receipts: list[dict[str, Any]], settings: Any, keep_all: bool
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[tuple[str, str]]]:
    """The receipts less (unless ``keep_all``) the ContentHandover ones the keyring shows
    are not by the recipient's key (or whose signature fails); those it cannot judge (no
    key for the recipient) stay, and ``proof verify`` reports them as unchecked. Also
    the acknowledgements left out, and the (fingerprint, recipient) of each one judged
    to be by the recipient's key: the keys the bundle carries."""
    import base64

    from certmail.ack import HandoverCheck, check_handover
    from keys.gpg import Keyring
    from notary.evidence import parse_statement

    ring: Keyring | None = None
    checked: dict[str, HandoverCheck] = {}  # by entry: receipts repeat entries
    kept: list[dict[str, Any]] = []
    for r in receipts:
        entry = r["entry"]
        if entry not in checked:
            stmt = parse_statement(base64.b64decode(entry))
            if stmt.get("event") != "ContentHandover":
                kept.append(r)
                continue
            ring = ring or Keyring(settings.gnupghome)
            checked[entry] = check_handover(stmt, ring, lambda: _smime_of(settings))
        check = checked[entry]
        if keep_all or check.ok or not check.have_key:
            kept.append(r)
    left_out = [
        {
            "entry": e,
            "recipient": c.recipient,
            "fingerprint": c.fingerprint or "",
            "reason": c.detail,
        }
        for e, c in checked.items()
        if c.have_key and not c.ok and not keep_all
    ]
    ok = {
        (c.fingerprint, c.recipient.lower())
        for c in checked.values()
        if c.ok and c.fingerprint and c.kind == "openpgp"  # an OpenPGP key to carry
    }
    return kept, left_out, sorted(ok)


@proof.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@vkey_option()
@tsa_root_option()
@click.option(
    "--gnupghome",
    type=click.Path(file_okay=False, path_type=Path),
    help="Check signatures with this GnuPG home (default: your certmail keyring, if there is "
    "one); where it holds no key, the keys the bundle carries are used.",
)
@click.option(
    "--trust-bundle-key",
    is_flag=True,
    help="Without --vkey: accept the bundle's own notary.vkey (else exit 3).",
)
@click.option(
    "--trust-bundle-root",
    is_flag=True,
    help="Without --tsa-root: accept the root at the end of the bundle's tsa-chain.pem "
    "(else exit 3).",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Exit 0 also when some checks could not run (valid, but N checks could not run).",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="VKEY",
    help="A witness's cosigner key (name+keyid+base64, or a file holding it); repeatable. "
    "The bundle's checkpoints must be cosigned by --quorum of them (docs/witness.md).",
)
@click.option(
    "--witnesses",
    "witnesses_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file of witness keys: one vkey a line, or a notary's witnesses.toml.",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=1),
    help="How many of the witnesses must have cosigned (default: all given).",
)
@anchor_root_option()
@click.option(
    "--smime-ca",
    "smime_ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA bundle (PEM) you trust for S/MIME: the certificate chains of an S/MIME "
    "sender signature, of CMS-signed acknowledgements and of S/MIME-signed MDNs (read "
    "receipts) must verify to it (bundle format 6, docs/proof-bundle.md). Without it those "
    "signatures are checked against the certificates they carry and their chains are "
    "reported unchecked.",
)
@json_option("Print the report as JSON on stdout.")
@home_option
@pass_app
def verify(
    app: App,
    bundle: Path,
    vkey_file: Path | None,
    tsa_root: Path | None,
    gnupghome: Path | None,
    trust_bundle_key: bool,
    trust_bundle_root: bool,
    allow_partial: bool,
    witnesses: tuple[str, ...],
    witnesses_file: Path | None,
    quorum: int | None,
    anchor_roots: tuple[Path, ...],
    smime_ca: Path | None,
) -> None:
    """Check a proof bundle offline: exit 0 when valid against a trusted notary key and
    TSA root, 3 when not (or when only the bundle's own key or root vouches for it and
    --trust-bundle-key / --trust-bundle-root was not given)."""
    from certmail.cli.proof_verify import VerifyArgs, run_verify

    run_verify(
        VerifyArgs(
            bundle,
            vkey_file,
            tsa_root,
            gnupghome,
            app.as_json,
            app.home,
            trust_bundle_key=trust_bundle_key,
            trust_bundle_root=trust_bundle_root,
            allow_partial=allow_partial,
            witnesses=witnesses,
            witnesses_file=witnesses_file,
            quorum=quorum,
            anchor_roots=anchor_roots,
            smime_ca=smime_ca,
        )
    )


from certmail.cli.verifier_page import verifier_page as _verifier_page  # noqa: E402  (web helper)

proof.add_command(_verifier_page)
from certmail.cli.renew import renew as _renew  # noqa: E402  (certmail proof renew)

proof.add_command(_renew)
