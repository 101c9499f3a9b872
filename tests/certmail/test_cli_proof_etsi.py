"""``certmail proof export --etsi`` end to end: a real send and acknowledgement, a real
notary process; ``proof verify`` checks the ETSI evidence and names a tampered file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import acked_bundle, proof_verify


def _verify(c: Any, bundle: Path, vkey: Path) -> Any:
    return proof_verify(c.alice, bundle, vkey=vkey, trust_root=True, as_json=True, partial=True)


def test_export_etsi_then_verify_and_tamper(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    _, bundle, vkey = acked_bundle(c, notary_server, tmp_path, export_args=("--etsi",))
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        members = {n: z.read(n) for n in names}
    xmls = sorted(n for n in names if n.endswith(".xml"))
    assert xmls == ["evidence/01-SubmissionAcceptance.xml", "evidence/02-ContentHandover.xml"]
    assert b"http://uri.etsi.org/19522/Event/ConsignmentAcceptance" in members[xmls[1]]
    assert "evidence-chain.pem" in names and "notary-certificate.pdf" in names
    p = _verify(c, bundle, vkey)
    assert p.returncode == 0, p.stderr
    checks = {ch["item"]: ch for ch in json.loads(p.stdout)["checks"]}
    assert checks["ETSI evidence"]["status"] == "ok"
    assert checks["notary certificate.pdf"]["status"] == "ok"
    # one changed character in the signed Message-ID: exit 3, naming the file
    bad = tmp_path / "bad.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            data = members[n]
            if n == xmls[1]:
                i = data.index(b"urn:ietf:rfc:5322:message-id") + 40
                data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
            z.writestr(n, data)
    bad.write_bytes(buf.getvalue())
    p = _verify(c, bad, vkey)
    assert p.returncode == 3, p.stderr
    assert p.stderr.startswith("certmail: error: ") and xmls[1] in p.stderr
