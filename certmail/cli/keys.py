"""``certmail keys``: your identity, your correspondents' keys, and DKIM keys.

Heavy imports happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certmail.cli.app import (
    App,
    emit_json,
    home_option,
    interactive,
    json_option,
    pass_app,
    passphrase_fd_option,
    say,
    warn,
)

if TYPE_CHECKING:
    from keys.gpg import KeyInfo, Keyring


def key_json(key: KeyInfo) -> dict[str, Any]:
    return {
        "fingerprint": key.fingerprint,
        "uids": list(key.uids),
        "emails": list(key.emails),
        "validity": key.validity,
        "trusted": key.validity in ("full", "ultimate"),
        "has_secret": key.has_secret,
        "created": key.created.isoformat(),
        "expires": key.expires.isoformat() if key.expires else None,
        "algo": key.algo,
    }


def grouped(fingerprint: str) -> str:
    """``ABCD 1234 ...``: the form people compare aloud."""
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


@click.group()
def keys() -> None:
    """Your OpenPGP identity, your correspondents' keys, and DKIM keys.

    \b
    Typical first steps:
      certmail init --email you@example.org --name "Your Name"
      certmail keys export you@example.org > you.asc    # give this to others
      certmail keys import bob.asc                      # a correspondent's key
      certmail keys fingerprint bob@example.org         # compare it with Bob
      certmail keys trust bob@example.org               # then mail to Bob works
      certmail keys smime --help                        # S/MIME keys and certificates
    """


@keys.command("list")
@click.option("--secret", is_flag=True, help="Only keys whose secret part you hold.")
@home_option
@json_option()
@pass_app
def list_cmd(app: App, secret: bool) -> None:
    """List the keys in your keyring: fingerprint, validity, user ids.

    Validity "full" or "ultimate" means certmail will encrypt to the key;
    "unknown" means run `certmail keys trust ADDR` after checking the fingerprint.
    """
    from keys.gpg import Keyring

    settings = app.settings()
    found = Keyring(settings.gnupghome).list_keys(secret=secret)
    if app.as_json:
        emit_json({"keys": [key_json(k) for k in found]})
        return
    if not found:
        say("no keys yet; create yours with: certmail init --email ADDR --name NAME")
        return
    for k in found:
        mark = "sec" if k.has_secret else "pub"
        click.echo(f"{mark}  {k.fingerprint}  {k.validity:<8}  {k.algo}")
        for uid in k.uids:
            click.echo(f"     {uid}")


@keys.command("export")
@click.argument("addr")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE instead of stdout.",
)
@home_option
@pass_app
def export_cmd(app: App, addr: str, output: Path | None) -> None:
    """Print the ASCII-armored public key of ADDR (an address or fingerprint).

    Send the output to your correspondents; they run `certmail keys import FILE`.
    """
    from keys.gpg import Keyring

    settings = app.settings()
    armored = Keyring(settings.gnupghome).export_public(addr)
    if output is None:
        click.echo(armored, nl=not armored.endswith("\n"))
    else:
        output.write_text(armored, encoding="ascii")
        say(f"wrote the public key of {addr} to {output}")


@keys.command("import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--secret",
    is_flag=True,
    help="Also import secret keys (your own, e.g. moved from another machine). "
    "Without it a file with a secret key is refused (asked on a terminal).",
)
@home_option
@json_option()
@pass_app
def import_cmd(app: App, file: Any, secret: bool) -> None:
    """Import OpenPGP public keys from FILE ("-" reads stdin).

    An imported key is not trusted yet: compare its fingerprint with its owner
    over another channel, then run `certmail keys trust ADDR`. A secret key is
    imported only with --secret (or when you say yes on a terminal); a revoked
    or expired key is imported and named as such (nothing can be sent to it).
    """
    from keys.gpg import Keyring
    from keys.gpg.importing import key_state
    from keys.gpg.packets import scan_keys

    settings = app.settings()
    data = file.read()
    if not secret and scan_keys(data).secret and interactive() and not app.as_json:
        secret = click.confirm(
            f"{file.name} holds a SECRET key (a correspondent sends only public keys). "
            "Import the secret key into your keyring?",
            default=False,
            err=True,
        )
    keyring = Keyring(settings.gnupghome)
    fprs = keyring.import_keys(data, secret=secret)
    infos = [keyring.key_for(f) for f in fprs]
    unusable = [(k, s) for k in infos if (s := key_state(k)) is not None]
    notes = [
        f"{k.fingerprint} ({', '.join(k.emails) or 'no address'}) is {s}: "
        "nothing can be sent to it; ask its owner for a current key"
        for k, s in unusable
    ]
    if app.as_json:
        emit_json({"imported": [key_json(k) for k in infos], "warnings": notes})
        return
    from rich.markup import escape

    for k in infos:
        click.echo(k.fingerprint)
        who = ", ".join(k.uids) or "(no user id)"  # from the key: never markup
        say(escape(f"imported {grouped(k.fingerprint)}  {who}  [{key_state(k) or k.validity}]"))
    for note in notes:
        warn(note)
    untrusted = [
        k for k in infos if k.validity not in ("full", "ultimate") and key_state(k) is None
    ]
    if untrusted:
        first = untrusted[0].emails[0] if untrusted[0].emails else untrusted[0].fingerprint
        say(f"check the fingerprint with its owner, then: certmail keys trust {first}")


@keys.command("trust")
@click.argument("addr_or_fingerprint")
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Do not ask for confirmation (never asked when stdin is not a terminal).",
)
@home_option
@passphrase_fd_option
@json_option()
@pass_app
def trust_cmd(app: App, addr_or_fingerprint: str, yes: bool) -> None:
    """Trust a correspondent's key after you have checked its fingerprint.

    Certifies the key locally with your own key (a non-exportable signature,
    like `gpg --quick-lsign-key`); certmail then encrypts to it and reports
    signatures from it as trusted. Needs your passphrase if your key has one
    and the agent has not unlocked it: asked on the terminal (three tries), or
    from --passphrase-fd N or CERTMAIL_PASSPHRASE_FILE.
    """
    from keys.gpg import Keyring
    from keys.gpg.importing import require_usable

    settings = app.settings()
    key = Keyring(settings.gnupghome).key_for(addr_or_fingerprint)
    require_usable(key)  # revoked or expired: said so, before asking anything
    if not yes and interactive() and not app.as_json:
        say(f"key  {grouped(key.fingerprint)}")
        for uid in key.uids:
            say(f"     {uid}")
        click.confirm("Did you check this fingerprint with its owner?", abort=True, err=True)
    fpr = app.keyring(settings).trust(key.fingerprint)
    after = Keyring(settings.gnupghome).key_for(fpr)
    if app.as_json:
        emit_json(key_json(after))
        return
    click.echo(fpr)
    say(
        f"trusted {grouped(fpr)} ({', '.join(after.emails) or 'no address'}): "
        f"validity {after.validity}"
    )


@keys.command("fingerprint")
@click.argument("addr")
@home_option
@json_option()
@pass_app
def fingerprint_cmd(app: App, addr: str) -> None:
    """Print the fingerprint of the key for ADDR, to compare with its owner."""
    from keys.gpg import Keyring

    settings = app.settings()
    key = Keyring(settings.gnupghome).key_for(addr)
    if app.as_json:
        emit_json(key_json(key))
        return
    click.echo(key.fingerprint)
    if interactive():
        say(f"{grouped(key.fingerprint)}  [{key.validity}]")


@keys.command("locate")
@click.argument("addr")
@click.option("--wkd", "use_wkd", is_flag=True, help="Ask the Web Key Directory of ADDR's domain.")
@click.option(
    "--keyserver",
    metavar="URL",
    envvar="CERTMAIL_KEYSERVER",
    help="A VKS keyserver (keys.openpgp.org's API), e.g. https://keys.openpgp.org.",
)
@click.option(
    "--autocrypt", "use_autocrypt", is_flag=True, help="Use the Autocrypt state of mail received."
)
@home_option
@json_option()
@pass_app
def locate_cmd(
    app: App, addr: str, use_wkd: bool, keyserver: str | None, use_autocrypt: bool
) -> None:
    """Find ADDR's key (WKD, keyserver, Autocrypt) and import it, untrusted.

    Without a flag every source is tried in that order (the keyserver only
    when one is given or CERTMAIL_KEYSERVER is set). The key must carry a
    user ID with exactly ADDR. It is imported with validity unknown: check the
    fingerprint with its owner, then `certmail keys trust ADDR`.
    """
    from certmail.locate import METHODS, locate
    from keys.gpg import Keyring

    chosen = tuple(
        m
        for m, on in zip(
            METHODS,
            (use_wkd, bool(keyserver) and _explicit_keyserver(), use_autocrypt),
            strict=True,
        )
        if on
    )
    settings = app.settings()
    keyring = Keyring(settings.gnupghome)
    found = locate(keyring, settings.home, addr, methods=chosen or METHODS, keyserver=keyserver)
    for w in found.warnings:
        warn(w)
    if app.as_json:
        emit_json(found.to_json())
        return
    for fpr in found.fingerprints:
        click.echo(fpr)
        say(f"found {grouped(fpr)} for {addr} in {found.describe()}; not trusted")
    say(f"check the fingerprint with its owner, then: certmail keys trust {addr}")


def _explicit_keyserver() -> bool:
    """Whether --keyserver was on the command line (not only CERTMAIL_KEYSERVER)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return ctx.get_parameter_source("keyserver") == ParameterSource.COMMANDLINE


def locate_for_send(app: App, addrs: list[str], keyring: Keyring | None = None) -> None:
    """`send`'s step: find the keys missing for ``addrs``; say where each came from.
    ``keyring``: the send's own (its key listings are then not made twice).

    A key found is imported untrusted, so the send that follows still stops
    at it with the hint `certmail keys trust ADDR` (nothing is trusted
    silently). A lookup that fails is a warning; the send then says the key
    is missing.
    """
    from certmail.locate import locate, missing
    from keys.errors import Error
    from keys.gpg import Keyring

    settings = app.settings()
    if keyring is None:
        keyring = Keyring(settings.gnupghome)
    for addr in missing(keyring, addrs):
        try:
            found = locate(keyring, settings.home, addr)
        except Error as e:
            warn(f"no key for {addr} in your keyring, and none found: {e.message}")
            continue
        for w in found.warnings:
            warn(w)
        for fpr in found.fingerprints:
            warn(
                f"no key for {addr} in your keyring: found {fpr} in {found.describe()}; "
                "imported, not trusted"
            )


def autocrypt_seen(app: App, file: Path, from_field: str | None = None) -> None:
    """`open`'s step: feed the message's Autocrypt header to the peer state (TOFU).

    ``from_field`` is the opened message's (protected, signature-checked) From.
    """
    from certmail.autocrypt import MAX_HEADER_BYTES, AutocryptError, ingest
    from certmail.mime import single_mailbox

    try:
        with file.open("rb") as f:
            head = f.read(MAX_HEADER_BYTES + 4)
    except OSError:
        return
    try:
        proved = single_mailbox(from_field) if from_field else None
        if from_field and proved is None:
            return  # the opened From is not one plain address: no Autocrypt update
        done = ingest(app.settings().home, head, protected_from=proved)
    except AutocryptError as e:
        warn(f"ignored the message's Autocrypt header: {e.message}; nothing stored")
        return
    if done.action == "key" and not app.as_json:
        say(
            f"kept the Autocrypt key of {done.addr} (TOFU, not trusted); to use it: "
            f"certmail keys locate {done.addr} --autocrypt"
        )


# -- DKIM ------------------------------------------------------------------------


def zone_line(name: str, value: str) -> str:
    """A zone-file TXT line; values over 255 bytes are split into several strings."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{name}. IN TXT {quoted}" if len(chunks) == 1 else f"{name}. IN TXT ( {quoted} )"


@keys.group("dkim")
def dkim_group() -> None:
    """DKIM keys: certmail signs outgoing mail with the key of the From: domain.

    \b
      certmail keys dkim generate --domain example.org --selector cm2024
      certmail keys dkim record --domain example.org   # publish this in DNS
    """


@dkim_group.command("generate")
@click.option("--domain", required=True, help="The domain of your From: address.")
@click.option(
    "--selector",
    required=True,
    help="A name for this key, published at SELECTOR._domainkey.DOMAIN.",
)
@click.option(
    "--algorithm",
    type=click.Choice(["ed25519", "rsa"]),
    default="ed25519",
    show_default=True,
    help="ed25519 (RFC 8463, small) or rsa (2048 bits, understood everywhere).",
)
@home_option
@json_option()
@pass_app
def dkim_generate_cmd(app: App, domain: str, selector: str, algorithm: str) -> None:
    """Create a DKIM key and print the DNS TXT record to publish."""
    from keys.dkim import DkimKey, dns_record, generate_dkim_key

    settings = app.settings()
    path = generate_dkim_key(settings.dkim_dir, domain, selector, algorithm)
    key = DkimKey(domain.strip().lower().rstrip("."), selector.strip().lower(), algorithm, path)
    name, value = dns_record(key)
    if app.as_json:
        emit_json(
            {
                "domain": key.domain,
                "selector": key.selector,
                "algorithm": algorithm,
                "private_key_path": str(path),
                "name": name,
                "value": value,
            }
        )
        return
    click.echo(zone_line(name, value))
    say(f"wrote {path}; publish the TXT record above, then mail from @{key.domain} is DKIM-signed")


@dkim_group.command("record")
@click.option("--domain", help="The domain (default: the domain of your configured email).")
@home_option
@json_option()
@pass_app
def dkim_record_cmd(app: App, domain: str | None) -> None:
    """Print the DNS TXT record for the DKIM key of a domain."""
    from keys.dkim import dns_record, find_dkim_key
    from keys.errors import NotFoundError

    settings = app.settings()
    if domain is None:
        if not settings.email:
            raise NotFoundError(
                "no --domain given and no email configured",
                hint="certmail keys dkim record --domain DOMAIN",
            )
        domain = settings.email.rsplit("@", 1)[1]
    key = find_dkim_key(settings.dkim_dir, domain)
    if key is None:
        raise NotFoundError(
            f"no DKIM key for {domain}",
            hint=f"certmail keys dkim generate --domain {domain} --selector SELECTOR",
        )
    name, value = dns_record(key)
    if app.as_json:
        emit_json(
            {
                "domain": key.domain,
                "selector": key.selector,
                "algorithm": key.algorithm,
                "private_key_path": str(key.private_key_path),
                "name": name,
                "value": value,
            }
        )
        return
    click.echo(zone_line(name, value))


from certmail.cli.smime import smime as _smime  # noqa: E402 - `keys smime ...` (docs/smime.md)

keys.add_command(_smime)
