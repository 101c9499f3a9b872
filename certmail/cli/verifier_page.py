"""``certmail proof verifier-page -o verify.html``: the notary's in-browser proof verifier
as one self-contained HTML file (script and style inlined, a CSP ``<meta>`` with their
hashes), to host or open from disk without trusting the notary that made a bundle.

``--vkey`` and ``--tsa-root`` fill in the trust roots the page starts with; without
them the person opening it pastes them (or the page says loudly that it uses the
bundle's own). docs/web.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from certmail.cli.app import App, json_option, pass_app
from certmail.cli.options import tsa_root_option, vkey_option


@click.command("verifier-page")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the page (.html).",
)
@vkey_option("Fill in this notary verifier key (a notary.vkey file).")
@tsa_root_option("Fill in this TSA root certificate (PEM).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@json_option("Print a JSON summary on stdout.")
@pass_app
def verifier_page(
    app: App, output: Path, vkey_file: Path | None, tsa_root: Path | None, force: bool
) -> None:
    """Write the proof verifier page as one self-contained HTML file.

    \b
    Examples:
      certmail proof verifier-page -o verify.html
      certmail proof verifier-page -o verify.html --vkey notary.vkey --tsa-root root.pem
    """
    import hashlib

    from certmail.cli.app import emit_json
    from certmail.cli.files import write_new
    from keys.errors import ConflictError
    from notary.web import Trust, verify_page

    if output.exists() and not force:  # before reading the trust files
        raise ConflictError(f"{output} exists", hint="choose another -o or pass --force")
    vkey = _read_vkey(vkey_file) if vkey_file is not None else ""
    root = _read_root(tsa_root) if tsa_root is not None else ""
    source = (
        "Filled in by `certmail proof verifier-page` from the files its maker chose; "
        "compare the fingerprints with the notary operator's."
        if vkey or root
        else ""
    )
    page = verify_page(Trust(vkey, root, source), self_contained=True)
    write_new(output, page.encode("utf-8"), force)
    if app.as_json:
        emit_json(
            {
                "output": str(output),
                "bytes": len(page.encode()),
                "sha256": hashlib.sha256(page.encode()).hexdigest(),
                "vkey": vkey or None,
                "tsa_root": bool(root),
            }
        )
        return
    click.echo(
        f"wrote {output}: open it in a browser; nothing it checks leaves the browser", err=True
    )


def _read_vkey(path: Path) -> str:
    from keys.errors import Error, MalformedError, NotFoundError
    from notary.note import Verifier

    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise NotFoundError(f"no such file: --vkey {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Error(f"cannot read --vkey {path}: {e}") from None
    try:
        Verifier.from_vkey(text)
    except MalformedError as e:
        raise MalformedError(
            f"--vkey {path}: {e.message}", hint="give the notary's notary.vkey (GET /v1/vkey)"
        ) from None
    return text


def _read_root(path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from keys.errors import Error, MalformedError, NotFoundError

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such file: --tsa-root {path}") from None
    except OSError as e:
        raise Error(f"cannot read --tsa-root {path}: {e.strerror or e}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise MalformedError(f"--tsa-root {path} holds no PEM certificates") from None
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)
