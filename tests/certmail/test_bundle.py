"""Proof bundles (certmail.bundle) built from a real notary: layout, tampering, hostile zips,
the certificate in headless Chromium, the VERIFY.txt openssl command."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import re
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certmail.bundle import (
    MAX_MEMBER_SIZE,
    read_members,
    verify_bundle,
    write_members,
)
from keys.errors import MalformedError, VerificationError
from tests.fixtures import bundle_world
from tests.fixtures.bundle_world import (
    HOSTILE_NAMES,
    MESSAGE,
    World,
    flip,
    mallory_forgery,
    png_grey,
    sha_hex,
    with_zip_feature,
    zip_members,
)

world = bundle_world.world  # the module-scoped fixture (a real notary, two bundles)


def test_layout_and_report(world: World) -> None:
    files = read_members(world.bundle)
    assert list(files) == [
        "message.eml",
        "bundle.json",
        "notary.vkey",
        "tsa-chain.pem",
        "evidence/01-SubmissionAcceptance.json",
        "evidence/01-SubmissionAcceptance.tlog-proof",
        "evidence/01-SubmissionAcceptance.tsr",
        "evidence/02-SubmissionAcceptance.json",
        "evidence/02-SubmissionAcceptance.tlog-proof",
        "evidence/02-SubmissionAcceptance.tsr",
        "evidence/consistency-1-3.json",
        "certificate.html",
        "certificate.pdf",
        "VERIFY.txt",
    ]
    assert files["message.eml"] == MESSAGE
    assert files["bundle.json"] == b'{\n  "format": 2\n}\n'
    assert files["notary.vkey"] == (world.notary.vkey + "\n").encode()
    assert files["evidence/01-SubmissionAcceptance.tsr"] == base64.b64decode(
        world.receipts[0]["tst"]
    )
    report = verify_bundle(world.bundle, vkey=world.notary.vkey, tsa_roots=world.roots)
    assert report.sha256 == sha_hex(MESSAGE) and report.message_id == "<contract-1@example.org>"
    assert report.vkey_trusted and report.tsa_root_trusted and report.warnings == ()
    assert [e.event for e in report.events] == ["SubmissionAcceptance"] * 2
    assert [e.checkpoint_size for e in report.events] == [1, 3]
    assert all(e.timestamp for e in report.events)
    items = {c.item: c for c in report.checks}
    assert items["consistency"].status == "ok" and "consistency-1-3" in items["consistency"].detail
    assert items["sender signature"].status == "skipped"
    assert items["documents"].status == "ok"
    assert report.recipients == ("bob@example.net",)
    js = report.to_json()
    assert js["valid"] is True and len(js["events"]) == 2 and js["format"] == 2
    html = files["certificate.html"].decode()
    assert "The contract" in html and "alice@example.org" in html  # --reveal-subject
    other = read_members(world.other)
    assert "The contract" not in other["certificate.html"].decode()
    assert "not revealed" in other["certificate.html"].decode()


def test_untrusted_key_and_root_are_warned_about(world: World) -> None:
    report = verify_bundle(world.bundle, vkey=None)
    assert not report.vkey_trusted and not report.tsa_root_trusted
    assert len(report.warnings) == 2
    assert "no trusted verifier key" in report.warnings[0]
    assert "no trusted TSA root" in report.warnings[1]


def _expect_failure(world: World, bundle: bytes, name: str, trusted: bool) -> None:
    with pytest.raises(VerificationError) as ei:
        if trusted:
            verify_bundle(bundle, vkey=world.notary.vkey, tsa_roots=world.roots)
        else:
            verify_bundle(bundle, vkey=None)
    assert name in ei.value.message, (name, ei.value.message)


def test_every_file_many_positions(world: World) -> None:
    """A flipped byte at 40 spread positions (first and last included) of every file."""
    files = read_members(world.bundle)
    for name, content in files.items():
        n = len(content)
        positions = sorted({0, n - 1, *range(0, n, max(1, n // 40))})
        for i, pos in enumerate(positions):
            _expect_failure(world, flip(files, name, pos, 0x01 << (i % 8)), name, i % 2 == 0)


@pytest.mark.parametrize("label", [3, 4])
def test_a_higher_format_label_than_the_members_need_is_refused(world: World, label: int) -> None:
    """Each bundle has one form: format 2 members relabelled 3 (cosigned checkpoints) or
    4 (outside time-stamps) with none of those members is a changed bundle."""
    files = read_members(world.bundle)
    assert files["bundle.json"] == b'{\n  "format": 2\n}\n'
    files["bundle.json"] = b'{\n  "format": %d\n}\n' % label
    for trusted in (True, False):
        _expect_failure(world, write_members(files), "bundle.json", trusted)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_flipped_byte_anywhere_is_caught(world: World, data: st.DataObject) -> None:
    files = read_members(world.bundle)
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    pos = data.draw(st.integers(0, len(files[name]) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    trusted = data.draw(st.booleans(), label="trusted")
    _expect_failure(world, flip(files, name, pos, mask), name, trusted)


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, 10**9), mask=st.integers(1, 255))
def test_flips_in_the_zip_container_never_pass_changed_content(
    world: World, pos: int, mask: int
) -> None:
    raw = bytearray(world.bundle)
    raw[pos % len(raw)] ^= mask
    try:
        changed = read_members(bytes(raw))
    except VerificationError:
        return
    if changed != read_members(world.bundle):
        with pytest.raises(VerificationError):
            verify_bundle(bytes(raw), vkey=world.notary.vkey, tsa_roots=world.roots)
    else:  # a flip in zip metadata only: the same content, still valid
        verify_bundle(bytes(raw), vkey=world.notary.vkey, tsa_roots=world.roots)


def test_evidence_swapped_between_bundles(world: World) -> None:
    a, b = read_members(world.bundle), read_members(world.other)
    stem = "evidence/01-SubmissionAcceptance"
    for ext in (".json", ".tlog-proof", ".tsr"):
        mixed = dict(a)
        mixed[stem + ext] = b[stem + ext]
        _expect_failure(world, write_members(mixed), stem, True)
    # the whole evidence set of the other bundle, with this message
    mixed = {k: v for k, v in a.items() if not k.startswith("evidence/")}
    mixed.update({k: v for k, v in b.items() if k.startswith("evidence/")})
    with pytest.raises(VerificationError, match=r"not message.eml"):
        verify_bundle(write_members(mixed), vkey=world.notary.vkey, tsa_roots=world.roots)
    # both messages' bundles, documents swapped: certificate.html is caught
    mixed = dict(a)
    mixed["certificate.html"] = b["certificate.html"]
    _expect_failure(world, write_members(mixed), "certificate.html", True)


def test_checkpoint_signed_by_another_key(world: World) -> None:
    # a consistent forgery: every checkpoint, notary.vkey and documents by mallory
    mallory, bundle = mallory_forgery(world)
    with pytest.raises(VerificationError, match=r"notary.vkey is not the trusted verifier key"):
        verify_bundle(bundle, vkey=world.notary.vkey, tsa_roots=world.roots)
    # ... which is why verifying without a trusted key warns loudly
    report = verify_bundle(bundle, vkey=None)
    assert mallory.verifier().vkey() in report.warnings[0] or "notary.vkey" in report.warnings[0]
    # the notary's own notary.vkey, one checkpoint re-signed by mallory
    files = read_members(world.bundle)
    files["evidence/02-SubmissionAcceptance.json"] = read_members(bundle)[
        "evidence/02-SubmissionAcceptance.json"
    ]
    for vkey in (world.notary.vkey, None):
        with pytest.raises(VerificationError, match=r"02-SubmissionAcceptance.json"):
            verify_bundle(write_members(files), vkey=vkey, tsa_roots=world.roots)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused(world: World, name: str) -> None:
    members = [*list(read_members(world.bundle).items()), (name, b"x")]
    with pytest.raises(MalformedError, match=r"unexpected member"):
        verify_bundle(zip_members(members), vkey=world.notary.vkey)


def test_duplicates_bombs_and_garbage_are_refused(world: World) -> None:
    files = read_members(world.bundle)
    dup = [*list(files.items()), ("message.eml", MESSAGE)]
    with pytest.warns(UserWarning):  # zipfile itself warns about the duplicate name
        data = zip_members(dup)
    with pytest.raises(MalformedError, match=r"message.eml twice"):
        verify_bundle(data, vkey=world.notary.vkey)
    bomb = dict(files)
    bomb["VERIFY.txt"] = b"\0" * (MAX_MEMBER_SIZE + 1)  # 4 MiB of zeros deflate to 4 KiB
    with pytest.raises(MalformedError, match=r"VERIFY.txt is too large"):
        verify_bundle(write_members(bomb), vkey=world.notary.vkey)
    # a header that understates the size: the cap holds on what is actually read
    lying = bytearray(write_members(bomb))
    for m in re.finditer(rb"PK\x01\x02", bytes(lying)):
        (usize,) = struct.unpack_from("<I", lying, m.start() + 24)
        if usize == MAX_MEMBER_SIZE + 1:
            struct.pack_into("<I", lying, m.start() + 24, 10)
    with pytest.raises(MalformedError):
        verify_bundle(bytes(lying), vkey=world.notary.vkey)
    for junk in (b"", b"not a zip"):
        with pytest.raises(MalformedError, match=r"not a readable zip"):
            verify_bundle(junk, vkey=world.notary.vkey)
    with pytest.raises(VerificationError, match=r"no message.eml"):  # an empty zip
        verify_bundle(b"PK\x05\x06" + b"\0" * 18, vkey=world.notary.vkey)
    missing = {k: v for k, v in files.items() if k != "tsa-chain.pem"}
    with pytest.raises(VerificationError, match=r"no tsa-chain.pem"):
        verify_bundle(write_members(missing), vkey=world.notary.vkey)
    gap = {k: v for k, v in files.items() if not k.startswith("evidence/01-")}
    with pytest.raises(VerificationError, match=r"numbered"):
        verify_bundle(write_members(gap), vkey=world.notary.vkey)


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "action", "data", "poster") and v:
                self.refs.append(v)


def test_certificate_is_self_contained_and_renders_in_chromium(
    world: World, tmp_path: Path
) -> None:
    page = read_members(world.bundle)["certificate.html"]
    text = page.decode()
    refs = _Refs()
    refs.feed(text)
    assert "script" not in refs.tags and "link" not in refs.tags and "img" not in refs.tags
    assert refs.refs == []
    assert "url(" not in text and "@import" not in text and "http://" not in text
    assert "https://" not in text and "//" not in re.sub(r"<code>.*?</code>", "", text)
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium (scripts/bootstrap.sh)"
    html_path = tmp_path / "certificate.html"
    html_path.write_bytes(page)
    png = tmp_path / "certificate.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1000,1400",
            html_path.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert png.is_file() and png.stat().st_size > 10_000
    grey = png_grey(png.read_bytes())
    assert min(grey) < 64 and max(grey) > 200  # dark text on a light page
    dark = sum(1 for p in grey if p < 128)
    assert 5_000 < dark < len(grey) // 2
    shutil.copy(png, Path("/tmp/certmail-certificate.png"))


def test_pdf_is_a_real_pdf(world: World) -> None:
    pdf = read_members(world.bundle)["certificate.pdf"]
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[startxref:].startswith(b"xref\n0 ")
    table = pdf[startxref:].split(b"trailer")[0].split(b"\n")[2:]
    offsets = [int(row[:10]) for row in table if row.endswith(b" n ")]
    assert len(offsets) >= 7
    for num, off in enumerate(offsets, start=1):
        assert pdf[off:].startswith(f"{num} 0 obj\n".encode())
    for m in re.finditer(rb"<< /Length (\d+) >>\nstream\n", pdf):
        end = m.end() + int(m.group(1))
        assert pdf[end : end + 9] == b"endstream"
    assert b"/BaseFont /Helvetica" in pdf and b"(Certificate of registered email) Tj" in pdf
    if shutil.which("pdftotext"):
        out = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
        assert sha_hex(MESSAGE).encode() in out.stdout


def test_verify_txt_openssl_commands_work(world: World, tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(world.bundle)) as zf:
        zf.extractall(tmp_path)
    text = (tmp_path / "VERIFY.txt").read_text()
    commands = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip().startswith(("awk ", "openssl ts -verify", "sha256sum"))
    ]
    assert sum(c.startswith("openssl ts -verify") for c in commands) == 2
    for cmd in commands:
        p = subprocess.run(
            cmd, shell=True, cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert p.returncode == 0, (cmd, p.stderr)
        if cmd.startswith("openssl"):
            assert "Verification: OK" in p.stdout
        if cmd.startswith("sha256sum"):
            assert sha_hex(MESSAGE) in p.stdout
    # the root split off the chain is the notary's root
    assert (tmp_path / "tsa-root.pem").read_bytes() == world.root_pem.read_bytes()
    # and the leaf hash it prints is the RFC 9162 leaf hash of the entry
    entry = base64.b64decode(world.receipts[0]["entry"])
    assert hashlib.sha256(b"\0" + entry).hexdigest() in text


def _zipfile_members(raw: bytes) -> dict[str, bytes]:
    """The members as the stdlib reads them: the reference the strict reader must match."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def test_zip_reader_refuses_or_agrees_with_zipfile(world: World, tmp_path: Path) -> None:
    """Every byte of the container flipped: the one reader either refuses (MalformedError)
    or returns exactly what zipfile returns."""
    raw = world.bundle
    assert read_members(raw) == _zipfile_members(raw)
    path = tmp_path / "b.zip"
    path.write_bytes(raw)
    assert read_members(path) == read_members(raw)
    accepted = 0
    for pos in range(len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << (pos % 8)
        try:
            got = read_members(bytes(flipped))
        except MalformedError:
            continue
        accepted += 1
        assert got == _zipfile_members(bytes(flipped)), pos
    assert accepted < len(raw) // 20  # only metadata zipfile ignores too (attributes)


@pytest.mark.parametrize("feature", ["comment", "extra", "prefix", "bzip2"])
def test_zip_features_outside_the_layout_are_refused(world: World, feature: str) -> None:
    """zipfile reads these, the strict reader refuses them: a bundle is only ever in the
    layout write_members writes."""
    raw = with_zip_feature(world.bundle, feature)
    assert _zipfile_members(raw) == read_members(world.bundle)
    with pytest.raises(MalformedError, match=r"not a readable zip file"):
        read_members(raw)
    with pytest.raises(MalformedError, match=r"not a readable zip file"):
        verify_bundle(raw, vkey=world.notary.vkey, tsa_roots=world.roots)


def test_big_messages_read_from_bytes_and_files(world: World, tmp_path: Path) -> None:
    """A message above 16 MiB (the old lean reader's limit), deflated and stored, reads
    as zipfile reads it, from bytes and from a file."""
    import os

    files = read_members(world.bundle)
    files["message.eml"] = os.urandom(17 << 20)
    for stored_up_to in (-1, 32 << 20):
        raw = write_members(files, stored_up_to=stored_up_to)
        path = tmp_path / "big.zip"
        path.write_bytes(raw)
        assert read_members(path) == read_members(raw) == _zipfile_members(raw) == files


def test_reference_only_checks_tokens_with_the_general_verifier(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CERTMAIL_REFERENCE_ONLY=1 switches the token template off; the report is the same."""
    import notary.rfc3161.verify

    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    want = verify_bundle(world.bundle, vkey=world.notary.vkey, tsa_roots=world.roots)
    monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")

    def unused(*_: object) -> None:
        raise AssertionError("the token template ran with CERTMAIL_REFERENCE_ONLY=1")

    monkeypatch.setattr(notary.rfc3161.verify, "_verify_by_template", unused)
    assert verify_bundle(world.bundle, vkey=world.notary.vkey, tsa_roots=world.roots) == want


def test_cli_fast_path_answers_as_click_does(world: World, tmp_path: Path) -> None:
    """``proof verify`` without Click (plain arguments) prints and exits exactly as the Click
    command does (after ``--``, or with a repeated --json, it goes through Click)."""
    import os
    import sys

    bundle = tmp_path / "b.certmail-proof.zip"
    bundle.write_bytes(world.bundle)
    bad = tmp_path / "bad.certmail-proof.zip"
    bad.write_bytes(flip(read_members(world.bundle), "message.eml", 3, 1))
    vkey = tmp_path / "n.vkey"
    vkey.write_text(world.notary.vkey + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
    env["CERTMAIL_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> tuple[int, str, str]:
        p = subprocess.run(
            [sys.executable, "-m", "certmail.cli.main", "proof", "verify", *args],
            capture_output=True,
            env=env,
            check=False,
            timeout=120,
        )
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    own = ["--trust-bundle-key", "--trust-bundle-root"]
    for target, opts, code in (
        (bundle, ["--vkey", str(vkey), f"--tsa-root={world.root_pem}"], 0),
        (bundle, own, 0),
        (bundle, [*own, "--allow-partial"], 0),
        (bundle, [], 3),  # only consistent with itself: not verified (issue 10 item 16)
        (bundle, ["--vkey", str(vkey)], 3),  # the TSA root is not pinned
        (bundle, ["--trust-bundle-key", f"--tsa-root={world.root_pem}"], 0),
        (bad, ["--vkey", str(vkey)], 3),
        (bad, own, 3),
    ):
        for form in (["--json"], []):
            fast = run(str(target), *form, *opts)
            assert fast == run(*form, *opts, "--", str(target))  # "--": through Click
            if form:  # a repeated flag is not a plain form either
                assert fast == run(str(target), "--json", "--json", *opts)
            assert fast[0] == code, fast
            if code == 3 and target == bundle:
                assert fast[1] == "" and "not verified against a trusted" in fast[2], fast
    # a repeated flag goes through Click, which accepts it: the same answer
    assert run(str(bundle), *own, "--trust-bundle-key") == run(str(bundle), *own)
    table = run(str(bundle), "--vkey", str(vkey), "--tsa-root", str(world.root_pem))
    assert table[0] == 0 and table[1].rstrip().endswith("valid") and table[2] == ""
    assert run("--help")[0] == 0 and "Usage:" in run("--help")[1]
    code, _, err = run(str(tmp_path))  # a directory: Click's own refusal
    assert code == 2 and "is a directory" in err
    code, _, err = run(str(bundle), "--bogus")
    assert code == 2 and "no such option" in err


def test_small_members_stored_and_the_older_deflated_form_verifies(world: World) -> None:
    """New bundles store small members uncompressed; a bundle with every member deflated
    (as written before) verifies the same, and flipped bytes are caught in it too."""
    files = read_members(world.bundle)
    with zipfile.ZipFile(io.BytesIO(world.bundle)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    deflated = write_members(files, stored_up_to=-1)
    with zipfile.ZipFile(io.BytesIO(deflated)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    assert read_members(deflated) == files
    a = verify_bundle(deflated, vkey=world.notary.vkey, tsa_roots=world.roots)
    b = verify_bundle(world.bundle, vkey=world.notary.vkey, tsa_roots=world.roots)
    assert a == b
    for name, content in files.items():
        for i, pos in enumerate((0, len(content) // 2, len(content) - 1)):
            data = bytearray(content)
            data[pos] ^= 0x20
            changed = dict(files)
            changed[name] = bytes(data)
            _expect_failure(world, write_members(changed, stored_up_to=-1), name, i % 2 == 0)


def _zipfile_writes(files: dict[str, bytes], stored: set[str]) -> bytes:
    """The zip :mod:`zipfile` writes of ``files`` with the bundle's fixed settings."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data)
    return buf.getvalue()


def test_writer_is_zipfile_byte_for_byte_and_stores_the_message(world: World) -> None:
    """Issue 16 item 1: message.eml is stored however large (ciphertext or compressed
    already), other members above 64 KiB deflated; the bytes are zipfile's, and the
    bundle verifies."""
    import os

    files = read_members(world.bundle)
    big = {**files, "message.eml": os.urandom(300_000), "certificate.pdf": b"%PDF" * 40_000}
    stored = {n for n, d in big.items() if len(d) <= 64 << 10} | {"message.eml"}
    assert write_members(big) == _zipfile_writes(big, stored)
    assert write_members(big, stored_up_to=-1) == _zipfile_writes(big, set())
    assert write_members(files) == _zipfile_writes(files, set(files)) == world.bundle
    with zipfile.ZipFile(io.BytesIO(write_members(big))) as zf:
        kinds = {i.filename: i.compress_type for i in zf.infolist()}
    assert kinds["message.eml"] == zipfile.ZIP_STORED
    assert kinds["certificate.pdf"] == zipfile.ZIP_DEFLATED


def _reference_escape(line: str) -> bytes:
    """certmail.bundle.documents.pdf._escape as it was: encode, control bytes to ?, escapes."""
    raw = line.encode("cp1252", "replace").translate(bytes.maketrans(bytes(range(32)), b"?" * 32))
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _reference_page_stream(lines: list[tuple[str, bool]]) -> bytes:
    parts = [b"BT", b"13 TL", b"50 792 Td"]
    font = None
    for text, bold in lines:
        want = b"/F2 10 Tf" if bold else b"/F1 9 Tf"
        if want != font:
            parts.append(want)
            font = want
        parts.append(b"(" + _reference_escape(text) + b") Tj T*")
    parts.append(b"ET")
    return b"\n".join(parts) + b"\n"


@settings(max_examples=500, deadline=None)
@given(
    lines=st.lists(st.tuples(st.text(), st.booleans()), max_size=8),
    special=st.text(alphabet="\\()\x00\x1f\n\r\t\x81\x80\u20ac\ud800é€ ?", max_size=20),
)
def test_pdf_text_escaping_equals_the_byte_level_reference(
    lines: list[tuple[str, bool]], special: str
) -> None:
    from certmail.bundle.documents.pdf import _escape, _page_stream

    lines = [*lines, (special, False), (special, True)]
    assert _page_stream(lines) == _reference_page_stream(lines)
    for text, _ in lines:
        assert _escape(text) == _reference_escape(text)


GOLDEN = Path(__file__).resolve().parent.parent / "vectors" / "certmail-proof"


def test_golden_bundle_verifies() -> None:
    """A bundle exported by the released code still verifies, documents byte for byte, in
    both zip forms (stored as written, and every member deflated as older bundles were)."""
    bundle = GOLDEN / "typical-v1.certmail-proof.zip"
    vkey = (GOLDEN / "notary.vkey").read_text().strip()
    roots = x509.load_pem_x509_certificates((GOLDEN / "tsa-root.pem").read_bytes())
    files = read_members(bundle)
    for raw in (bundle.read_bytes(), write_members(files, stored_up_to=-1)):
        report = verify_bundle(raw, vkey=vkey, tsa_roots=roots)
        assert report.warnings == () and len(report.events) == 3
        assert [c.item for c in report.checks] == [
            "notary key",
            "TSA chain",
            "01 time-stamp",
            "01 SubmissionAcceptance",
            "02 SubmissionAcceptance",
            "03 SubmissionAcceptance",
            "consistency",
            "consistency",
            "sender signature",
            "documents",
        ]
        assert all(c.status == "ok" for c in report.checks if c.item != "sender signature")
    changed = files | {"VERIFY.txt": files["VERIFY.txt"] + b" "}
    with pytest.raises(VerificationError, match=r"VERIFY.txt"):
        verify_bundle(write_members(changed), vkey=vkey, tsa_roots=roots)


def test_header_facts_of_folded_encoded_and_openpgp_messages() -> None:
    """The one header reader: RFC 2047 words decoded, folded To: split into addresses, the
    OpenPGP/MIME byte ranges that VERIFY.txt's tail | head commands cut out."""
    from certmail.bundle.headers import header_facts

    b = "b1=_x"
    signed = (
        f"From: =?utf-8?q?Al=C3=AFce?= <alice@example.org>\r\nTo: a@x,\r\n b@y\r\n"
        f'Content-Type: multipart/signed; micalg=pgp-sha256;\r\n boundary="{b}"\r\n\r\n'
        f"preamble\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{b} \r\n"
        f"Content-Type: application/pgp-signature\r\n\r\nSIG\r\n--{b}--\r\nepilogue"
    ).encode()
    got = header_facts(signed)
    assert (got.sender, got.recipients, got.subject) == (
        "Alïce <alice@example.org>",
        ("a@x", "b@y"),
        None,
    )
    assert got.layout is not None and got.layout.kind == "signed"
    assert got.layout.signature is not None
    (o1, n1), (o2, n2) = got.layout.first, got.layout.signature
    assert signed[o1 : o1 + n1] == b"Content-Type: text/plain\r\n\r\nhi"
    assert signed[o2 : o2 + n2] == b"SIG"
    encrypted = header_facts(signed.replace(b"signed", b"encrypted"))
    assert encrypted.layout is not None and encrypted.layout.kind == "encrypted"
    (o, n) = encrypted.layout.first
    assert signed.replace(b"signed", b"encrypted")[o : o + n] == b"SIG"
    assert header_facts(signed.replace(b"--\r\nepilogue", b"")).layout is None  # unclosed
    plain = header_facts(MESSAGE)
    assert (plain.sender, plain.recipients, plain.subject, plain.layout) == (
        "Alice <alice@example.org>",
        ("bob@example.net",),
        "The contract",
        None,
    )
    for garbage in (b"garbage", b" From: x\r\n\r\n"):
        assert header_facts(garbage).sender == "(message.eml has no readable header)"
    assert header_facts(b"\r\nbody").sender == "(no From: header)"


def test_documents_of_every_released_renderer_verify_and_no_other() -> None:
    """Issue 10 item 14: renderer 2 words a submission by its channel; the documents of
    renderer 1 (the golden bundle's) still verify, a mix of the two does not, and a
    protected Subject is accepted only for an encrypted message."""
    from dataclasses import replace

    from certmail.bundle import documents
    from certmail.bundle.documents import proves
    from certmail.bundle.layout import HTML, PDF, VERIFY_TXT
    from certmail.bundle.verify import check_evidence

    assert "registered delivery" in proves("SubmissionAcceptance", False)  # renderer 1
    assert "registered delivery" in proves("SubmissionAcceptance", False, "smtp", 2)
    direct = proves("SubmissionAcceptance", True, "api", 2)
    assert "registered delivery" not in direct and "saw only the hash" in direct
    assert "registered delivery" not in proves("SubmissionAcceptance", False, None, 2)
    files = read_members(GOLDEN / "typical-v1.certmail-proof.zip")
    vkey = (GOLDEN / "notary.vkey").read_text()
    _, _, facts = check_evidence(files, vkey, None, None, documents=False)
    assert facts.events[0].channel == "api"
    v1 = documents.render(replace(facts, renderer=1), False)
    v2 = documents.render(facts, False)
    assert v1 == {n: files[n] for n in v1} and v1[HTML] != v2[HTML]
    assert documents.matches({**files, **v2}, facts)
    assert not documents.matches({**files, **v2, VERIFY_TXT: v1[VERIFY_TXT]}, facts)
    assert not documents.matches({**files, **v2, PDF: v1[PDF]}, facts)
    # a "protected" Subject on a message that is not encrypted: refused
    fake = documents.render(facts, True, protected_subject="Pay now")
    assert b"Pay now" in fake[HTML] and not documents.matches({**files, **fake}, facts)


def test_golden_bundle_verifies_through_the_cli_with_the_new_verdict(tmp_path: Path) -> None:
    """Issue 10 items 15/16 on the pre-split golden bundle: with its trusted key and root
    the CLI exits 0 and says "valid" (its message is not OpenPGP: nothing could not run);
    without them it exits 3. The verdict counts only checks that apply."""
    import os
    import sys

    from certmail.bundle.report import BundleReport, Check

    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMAIL_")}
    env["CERTMAIL_HOME"] = str(tmp_path / "home")
    base = [
        sys.executable,
        "-m",
        "certmail.cli.main",
        "proof",
        "verify",
        str(GOLDEN / "typical-v1.certmail-proof.zip"),
    ]
    pinned = ["--vkey", str(GOLDEN / "notary.vkey"), "--tsa-root", str(GOLDEN / "tsa-root.pem")]
    p = subprocess.run(
        [*base, *pinned, "--json"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert '"verdict": "valid"' in p.stdout and '"unchecked": []' in p.stdout
    p = subprocess.run(base, capture_output=True, env=env, timeout=120, check=False)
    assert p.returncode == 3
    skipped = Check("sender signature", "skipped", "no keyring given")
    na = Check("sender signature", "skipped", "message.eml is not OpenPGP/MIME", applies=False)
    report = BundleReport("0" * 64, "<m@x>", "a@x", (), "v", True, True, (), (na,))
    assert report.verdict == "valid" and report.unchecked == ()
    report = BundleReport("0" * 64, "<m@x>", "a@x", (), "v", True, True, (), (skipped, skipped))
    assert report.verdict == "valid, but 2 checks could not run"


def _reference_layout(message: bytes) -> Any:
    """The OpenPGP byte ranges by the copying splitter: certmail.mime.split_multipart's
    parts, placed where its delimiter expression matched (the reference for the
    in-place search)."""
    from certmail.bundle.documents import MimeLayout
    from certmail.mime import parse_entity, split_multipart

    try:
        entity = parse_entity(message)
        base = len(entity.header_block) + 2
        ctype = entity.content_type
        if ctype not in ("multipart/signed", "multipart/encrypted"):
            return None
        parts = split_multipart(entity)
        delim = re.escape(b"--" + str(entity.param("boundary")).encode())
        where, start = [], None
        for m in re.finditer(b"(?:^|\r\n)" + delim + b"(--)?[ \t]*(?:\r\n|$)", entity.body):
            if start is not None:
                where.append((base + start, base + m.start()))
            if m.group(1):
                break
            start = m.end()
        assert [message[a:b] for a, b in where] == parts
        if len(parts) != 2:
            return None
        second = parse_entity(parts[1])
        cte = str(second.headers.get("Content-Transfer-Encoding") or "7bit").lower()
    except (MalformedError, ValueError, LookupError):
        return None
    if cte.strip() not in ("7bit", "8bit"):
        return None
    (s0, e0), (s1, _) = where
    # Where the copy's body starts (a part whose header block has no blank line has an
    # empty body at its end, not two bytes past it).
    body = (s1 + second.body_start, len(second.body))
    if ctype == "multipart/signed":
        return MimeLayout("signed", (s0, e0 - s0), body)
    return MimeLayout("encrypted", body)


_PIECES = [
    "--b1=_x\r\n",
    "--b1=_x \r\n",
    "--b1=_x--\r\n",
    "--b1=_x--",
    "--b1=_xy\r\n",
    "Content-Type: text/plain\r\n\r\n",
    "Content-Transfer-Encoding: base64\r\n\r\n",
    "Content-Type: application/pgp-signature\r\n\r\n",
    "\r\n",
    "hi\r\n",
    "SIG",
    "text --b1=_x not a line\r\n",
    "\n",
    "\t",
    "--",
    "Content-Transfer-Encoding: 8bit\r\n",
]


def test_an_empty_second_part_is_no_openpgp_signature() -> None:
    """Found by the property below (a serial REFERENCE_ONLY run): three delimiter lines and
    an empty line make an empty second part; reading it must not run past its end into
    the close delimiter's CRLF (the in-place search gave a signature of length -2)."""
    from certmail.bundle.headers import header_facts

    head = 'From: a@x\r\nContent-Type: multipart/signed; boundary="b1=_x"\r\n\r\n'
    body = "--b1=_x\r\n--b1=_x\r\n--b1=_x\r\n\r\n--b1=_x--\r\n"
    message = (head + body).encode()
    assert _reference_layout(message) is None
    assert header_facts(message).layout is None


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["signed", "encrypted", "mixed"]),
    pieces=st.lists(st.sampled_from(_PIECES), max_size=14),
)
def test_openpgp_ranges_found_in_place_agree_with_split_multipart(
    kind: str, pieces: list[str]
) -> None:
    """Issue 16: header_facts locates the OpenPGP parts with bytes.find, without copying
    message.eml; the ranges are those the copying split found, for any arrangement of
    delimiter lines, padding, preamble, epilogue and part headers."""
    from certmail.bundle.headers import header_facts

    head = f'From: a@x\r\nContent-Type: multipart/{kind}; boundary="b1=_x"\r\n\r\n'
    message = (head + "".join(pieces)).encode()
    assert header_facts(message).layout == _reference_layout(message)
    first = ["--b1=_x\r\n", "Content-Type: text/plain\r\n\r\n", "hi\r\n", "--b1=_x \r\n"]
    second = ["Content-Type: application/pgp-signature\r\n\r\n", "SIG\r\n", "--b1=_x--\r\n"]
    message = (head + "".join([*first, *second])).encode()
    assert header_facts(message).layout == _reference_layout(message)
    assert (header_facts(message).layout is None) == (kind == "mixed")
