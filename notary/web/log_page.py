"""``GET /log``: the notary's public log page (issue 13 item 3): the current checkpoint and
tree size, the verifier key and TSA chain to copy, the witnesses, how to audit, and the tree's
growth over time (its stored checkpoints, an inline SVG chart).

Pure rendering from values the routes read from the service; every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from string import Template

from notary.storage import LogStore, StoredCheckpoint
from notary.web.chart import growth_chart

__all__ = ["growth_sample", "log_page"]


def _chain_list(chain_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    if not chain_pem:
        return "<li>no TSA configured</li>"
    items = []
    for cert in x509.load_pem_x509_certificates(chain_pem):
        subject = html.escape(cert.subject.rfc4514_string())
        fpr = cert.fingerprint(hashes.SHA256()).hex()
        items.append(f"<li>{subject} — SHA-256 <span class='mono'>{fpr}</span></li>")
    return "".join(items)


def log_page(
    *,
    origin: str,
    vkey: str,
    size: int,
    root_hash: bytes,
    signed: datetime | None,
    checkpoint: bytes,
    chain_pem: bytes,
    base_url: str,
    growth: Sequence[StoredCheckpoint] = (),
    static_prefix: str = "/web/static",
) -> str:
    """The log page's HTML; ``growth`` is checkpoints in size order (the chart)."""
    import base64

    text = resources.files(__package__).joinpath("templates", "log.html").read_text("utf-8")
    e = html.escape
    return Template(text).substitute(
        origin=e(origin),
        static=e(static_prefix),
        size=str(size),
        root=e(base64.b64encode(root_hash).decode()) if root_hash else "(empty log)",
        signed=e(f"{signed:%Y-%m-%d %H:%M:%S} UTC") if signed else "(not yet)",
        checkpoint=e(checkpoint.decode("utf-8", "replace")),
        vkey=e(vkey),
        key_id=e(vkey.split("+")[1] if vkey.count("+") >= 2 else "?"),
        chain=e(chain_pem.decode("ascii", "replace")),
        chain_list=_chain_list(chain_pem),
        witnesses="No witnesses cosign this log's checkpoints yet (C2SP tlog-witness); "
        "audit it yourself as below.",
        base=e(base_url.rstrip("/")),
        growth_chart=growth_chart([(f"{c.time:%Y-%m-%d %H:%M}", c.size) for c in growth]),
        growth_rows="".join(
            f"<tr><td>{c.time:%Y-%m-%d %H:%M:%S}</td><td>{c.size}</td></tr>" for c in growth
        ),
    )


def growth_sample(storage: LogStore, size: int, points: int = 40) -> list[StoredCheckpoint]:
    """Up to ``points`` stored checkpoints spread over the sizes 1..``size`` (one indexed
    lookup each: the first checkpoint at or above each step)."""
    out: list[StoredCheckpoint] = []
    for i in range(1, points + 1):
        want = max(1, size * i // points)
        if out and want <= out[-1].size:
            continue
        cp = storage.checkpoint_from(want)
        if cp is None or cp.size > size:  # none yet, or signed after the page's checkpoint
            break
        if not out or cp.size > out[-1].size:
            out.append(cp)
    return out
