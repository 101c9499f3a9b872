"""Issue 9: ``certmail proof verify`` of a plain bundle (format 1, or 2 without keys: a
message neither OpenPGP/MIME nor S/MIME, no acknowledgement, no feature of a later
format) imports none of the feature checkers, the MIME reader or the email package's
Message; and the header fast path that spares them answers as the full reader does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certmail.bundle import documents, read_members, verify_bundle, write_members
from certmail.bundle import headers as headers_module
from certmail.bundle.headers import header_facts
from certmail.bundle.verify import check_evidence
from tests.fixtures import bundle_world
from tests.fixtures.bundle_world import World

world = bundle_world.world  # the module-scoped fixture (a real notary, two bundles)

#: What a plain bundle's verification must not import (each named module or package).
NOT_FOR_PLAIN = (
    "certmail.bundle.anchors",
    "certmail.bundle.blind",
    "certmail.bundle.cosigned",
    "certmail.bundle.documents.feature_facts",
    "certmail.bundle.etsi",
    "certmail.bundle.etsi_pdf",
    "certmail.bundle.export",
    "certmail.bundle.mdns",
    "certmail.bundle.openpgp",
    "certmail.bundle.pgpkeys",
    "certmail.bundle.renew",
    "certmail.bundle.smimeack",
    "certmail.bundle.smimemdn",
    "certmail.bundle.smimesig",
    "certmail.mime",
    "certmail.smime",
    "email.header",
    "email.message",
    "keys.gpg",
    "notary.mime",
)


def _format1(world: World) -> bytes:
    """The world's bundle in format 1: no bundle.json, the documents by renderer 2 (as
    benchmarks/bench_proof.py makes the format 1 row's bundle)."""
    files = read_members(world.bundle)
    del files["bundle.json"]
    _, _, facts = check_evidence(files, world.notary.vkey, None, None, documents=False)
    files.update(documents.render(replace(facts, renderer=2), True))
    return write_members(files)


def _modules_after_verify(
    bundle: Path, world: World, home: Path, reference_only: bool = False
) -> tuple[str, set[str]]:
    """``certmail proof verify`` in a fresh interpreter (its fast paths on, or off with
    ``reference_only``): its output and sys.modules."""
    vkey = bundle.with_name("notary.vkey")
    vkey.write_text(world.notary.vkey + "\n")
    args = ["proof", "verify", str(bundle), "--vkey", str(vkey), "--tsa-root", str(world.root_pem)]
    code = (
        "import sys\n"
        "from certmail.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "CERTMAIL_HOME": str(home), "CERTMAIL_REFERENCE_ONLY": "0"}
    if reference_only:
        env["CERTMAIL_REFERENCE_ONLY"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    ).stdout
    text, _, modules = out.rpartition("MODULES ")
    return text, set(modules.split())


@pytest.mark.parametrize("fmt", [1, 2])
def test_plain_bundle_verifies_without_the_feature_checkers(
    world: World, fmt: int, tmp_path: Path
) -> None:
    data = _format1(world) if fmt == 1 else world.bundle
    report = verify_bundle(data, vkey=world.notary.vkey, tsa_roots=world.roots)
    assert report.format == fmt and not report.warnings
    bundle = tmp_path / "plain.certmail-proof.zip"
    bundle.write_bytes(data)
    text, modules = _modules_after_verify(bundle, world, tmp_path / "home")
    assert text.rstrip().endswith("valid")
    assert "message.eml is not OpenPGP/MIME" in text  # the sender-signature row is there
    assert {"certmail.bundle.verify", "certmail.bundle.tokens"} <= modules  # it verified
    imported = sorted(
        m for m in modules for bad in NOT_FOR_PLAIN if m == bad or m.startswith(bad + ".")
    )
    assert imported == []


def test_reference_only_reads_the_header_with_the_mime_reader(world: World, tmp_path: Path) -> None:
    """``CERTMAIL_REFERENCE_ONLY=1`` switches the header fast path off: the MIME reader
    and the email package read the header, and the verdict is the same."""
    bundle = tmp_path / "plain.certmail-proof.zip"
    bundle.write_bytes(_format1(world))
    fast, _ = _modules_after_verify(bundle, world, tmp_path / "home")
    text, modules = _modules_after_verify(bundle, world, tmp_path / "home", reference_only=True)
    assert {"certmail.mime", "email.message"} <= modules
    assert text == fast and text.rstrip().endswith("valid")


_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Content-Type", "X-Other", "cc", "TO"])
_VALUES = st.sampled_from(
    [
        "Alice <alice@example.org>",
        "bob@example.net, carol@example.com",
        '"Bob, B." <bob@example.net>',
        "  lead and trail  ",
        "",
        "text/plain; charset=utf-8",
        "multipart/mixed; boundary=x",
        "multipart/signed; protocol=x",
        "application/pkcs7-mime",
        "(comment) dave@example.org",
        "undisclosed-recipients:;",
        "a" * 400,
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_the_header_fast_path_answers_as_the_full_reader(fields: list[tuple[str, str]]) -> None:
    """Every block the fast path reads gives the sender, recipients and subject the
    MIME reader and the email package give; a plain one is neither OpenPGP nor S/MIME."""
    block = "".join(f"{n}: {v}\r\n" for n, v in fields) or "X-Empty: 1\r\n"
    message = (block + "\r\nbody\r\n").encode()
    fast = headers_module._simple_header(message)
    orig = headers_module._simple_header
    try:
        headers_module._simple_header = lambda _m: None  # type: ignore[assignment]
        full = header_facts(message)
    finally:
        headers_module._simple_header = orig
    assert not full.plain
    if fast is None:
        return  # the full reader's alone
    assert fast.plain and fast.layout is None and full.layout is None
    assert (fast.sender, fast.recipients, fast.subject) == (
        full.sender,
        full.recipients,
        full.subject,
    )
    from certmail.mime import parse_entity
    from certmail.smime.entities import smime_kind

    assert smime_kind(parse_entity(message)) is None
