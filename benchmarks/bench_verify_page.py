"""Benchmark the in-browser proof verifier (issue 13, speed: "the verify page checks a
typical bundle in ≤ 500 ms in headless Chromium on this machine, measured by the test
driver, and a 100 MB bundle without running out of memory").

Run: .venv/bin/python benchmarks/bench_verify_page.py [--runs 15] [--big-mb 100]

Bundles: bench_proof.py's typical and heavy bundles (one real notary), and a bundle whose
message.eml is ``--big-mb`` MB (another notary). Debian's Chromium, headless, through
/usr/bin/chromedriver, loads the self-contained page of ``certmail proof verifier-page``
with the trust roots filled in. Prints one table:

- the page, as a user meets it: from picking the file (selenium ``send_keys`` on the file
  input) to the verdict in the page, measured by the driver: median and best of ``--runs``;
- the page's own figure for the same runs (``performance.now()`` around reading the file
  and checking it);
- the peer, in the same run: ``certmail proof verify --json`` as a fresh process, and
  ``verify_bundle()`` in one process (warm), on the same bundle;
- the big bundle: one run each, the page's JS heap after it (Chromium's
  ``performance.memory``) beside the bundle's size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def build_big(work: Path, megabytes: int) -> Path:
    """A bundle of one message of ``megabytes`` MB (incompressible), time-stamped."""
    import base64

    import httpx

    from certmail.bundle import export_bundle
    from certmail.notary_client import NotaryClient
    from tests.fixtures.notary import NotaryProcess, init_notary_dir

    head = (
        b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
        b"Subject: Big\r\nMessage-ID: <big-1@example.org>\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    raw = base64.encodebytes(os.urandom(megabytes * 750_000)).replace(b"\n", b"\r\n")
    message = head + raw
    directory = init_notary_dir(work / "big-notary")
    notary = NotaryProcess(directory)
    notary.start()
    try:
        token = notary.token_for("alice@example.org")
        with NotaryClient(notary.url, token) as client:
            r = client.notarize(hashlib.sha256(message).hexdigest(), "<big-1@example.org>")
        chain = httpx.get(notary.url + "/v1/tsa/chain").content
        path = work / "big.certmail-proof.zip"
        path.write_bytes(
            export_bundle(message, [r], vkey=notary.vkey, tsa_chain_pem=chain, consistency=None)
        )
        (work / "big.vkey").write_text(notary.vkey + "\n")
    finally:
        notary.stop()
    return path


def page_for(work: Path, vkey: Path, root: Path, name: str) -> Path:
    import subprocess

    out = work / name
    subprocess.run(
        [
            *(sys.executable, "-m", "certmail.cli.main", "proof", "verifier-page", "-o", str(out)),
            *("--vkey", str(vkey), "--tsa-root", str(root), "--force"),
        ],
        check=True,
        capture_output=True,
    )
    return out


def in_page(driver: object, page: Path, bundle: Path, runs: int) -> tuple[list[float], list[float]]:
    """(driver-measured seconds, page-measured seconds) of ``runs`` verifications."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d: object = driver
    walls, own = [], []
    for _ in range(runs):
        d.get(page.as_uri())  # type: ignore[attr-defined]
        WebDriverWait(d, 60).until(
            lambda x: x.execute_script("return document.body.dataset.ready") == "true"
        )
        t0 = time.perf_counter()
        d.find_element(By.ID, "bundle").send_keys(str(bundle))  # type: ignore[attr-defined]
        v = WebDriverWait(d, 600).until(ec.presence_of_element_located((By.ID, "verdict")))
        walls.append(time.perf_counter() - t0)
        if v.get_attribute("data-valid") != "true":
            raise SystemExit(f"the page did not find {bundle.name} valid: {v.text}")
        own.append(int(d.execute_script("return document.body.dataset.lastMs")) / 1000)  # type: ignore[attr-defined]
    return walls, own


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--big-mb", type=int, default=100)
    args = ap.parse_args()

    from bench_proof import build, wall
    from cryptography import x509

    from certmail.bundle import verify_bundle
    from tests.web.browser import start_browser

    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        work = Path(tmp)
        typical, heavy, _distinct, vkey, root = build(work)
        big = build_big(work, args.big_mb)
        page = page_for(work, vkey, root, "verify.html")
        big_page = page_for(
            work, work / "big.vkey", work / "big-notary" / "tsa" / "root-ca.pem", "big.html"
        )
        env = {
            **os.environ,
            "PYTHONPYCACHEPREFIX": str(work / "pyc"),
            "CERTMAIL_HOME": str(work / "home"),
        }
        cli = [sys.executable, "-m", "certmail.cli.main", "proof", "verify"]
        roots = x509.load_pem_x509_certificates(root.read_bytes())
        vk = vkey.read_text().strip()
        rows = []
        driver = start_browser(work / "chromium")
        try:
            for name, bundle in (("typical", typical), ("heavy", heavy)):
                walls, own = in_page(driver, page, bundle, args.runs)
                args_cli = [
                    *cli,
                    str(bundle),
                    "--json",
                    "--vkey",
                    str(vkey),
                    "--tsa-root",
                    str(root),
                ]
                wall(args_cli, 1, env)  # warm the bytecode cache
                cli_t, _ = wall(args_cli, args.runs, env)
                verify_bundle(bundle, vkey=vk, tsa_roots=roots)
                t0 = time.perf_counter()
                for _ in range(args.runs):
                    verify_bundle(bundle, vkey=vk, tsa_roots=roots)
                lib = (time.perf_counter() - t0) / args.runs
                rows.append((name, bundle.stat().st_size, walls, own, cli_t, lib))
            bw, bo = in_page(driver, big_page, big, 1)
            heap = driver.execute_script("return performance.memory.usedJSHeapSize")
            big_roots = x509.load_pem_x509_certificates(
                (work / "big-notary" / "tsa" / "root-ca.pem").read_bytes()
            )
            t0 = time.perf_counter()
            verify_bundle(big, vkey=(work / "big.vkey").read_text().strip(), tsa_roots=big_roots)
            big_lib = time.perf_counter() - t0
        finally:
            driver.quit()
        ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
        print(
            f"{'bundle':8} {'bytes':>11}  {'page (driver) median/best':>26}  {'page (own)':>10}  "
            f"{'peer: CLI fresh median':>22}  {'peer: verify_bundle()':>21}"
        )
        for name, size, walls, own, cli_t, lib in rows:
            print(
                f"{name:8} {size:>11,}  {ms(statistics.median(walls)):>14} / "
                f"{ms(min(walls)):>9}  {ms(statistics.median(own)):>10}  "
                f"{ms(statistics.median(cli_t)):>22}  {ms(lib):>21}"
            )
        print(
            f"{'big':8} {big.stat().st_size:>11,}  {ms(bw[0]):>26}  {ms(bo[0]):>10}  "
            f"{'':>22}  {ms(big_lib):>21}"
        )
        print(
            f"big bundle: the page's JS heap after checking it {heap / 2**20:.0f} MiB "
            f"(bundle {big.stat().st_size / 2**20:.0f} MiB); target: typical ≤ 500 ms in the page"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
