"""Benchmark `certmail send`: a big attachment vs plain gpg, and bulk certified sends.

1. Large: `certmail send` (a child process) of one N MB random attachment
   (default 8; ``--mb`` or ``CERTMAIL_BENCH_MB``, 100 for issue 16) against
   `gpg --sign --encrypt -z0 --armor` of the same file in the same run (the
   peer: no compression, as certmail does not compress random data), with
   `gpg -z0` (binary) and gpg with its default compression printed beside it;
   wall times, the ratio (target <= 1.5) and the child's peak RSS (resource
   usage from wait4); the child has a bytecode cache, as an installed package
   has (:func:`bytecode_env`). Also a send of ``--rss-mb`` MB (default 2x ``--mb``),
   DKIM-signed (the DKIM body hash streams), for the RSS target (< 300 MB at
   200 MB).
2. Bulk: M small certified messages from one process (sign, encrypt,
   re-verify, SMTP, notarize with a real local notary); messages per minute
   (target >= 200) and where the time goes.

The SMTP server is a minimal loopback sink that reads DATA in large chunks,
so the numbers measure certmail, not a Python SMTP server.

3. ``--cte``: only the pipeline, the attachment base64 (as sent) against raw bytes
   (a binary Content-Transfer-Encoding, measured as an option: docs/send-open.md).

    .venv/bin/python benchmarks/bench_send.py [--mb 8] [--runs 3] [--rss-mb 16] [--bulk 200] [--cte]
        [--before DIR]   (DIR: e.g. `git archive 1662ba9 | tar -x -C DIR`, run in each round)
    CERTMAIL_BENCH_MB=100 make bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.send_world import ALICE, BOB, bytecode_env, identities, timed_child  # noqa: E402
from benchmarks.sinks import LoopbackSink  # noqa: E402
from certmail.config import Settings  # noqa: E402
from keys.gpg import Keyring  # noqa: E402

DEFAULT_MB = int(os.environ.get("CERTMAIL_BENCH_MB", "8"))
#: The gpg runs printed beside certmail: (label, extra arguments); the first is the peer.
GPG_PEERS = (
    ("gpg --sign --encrypt -z0 --armor", ["-z0", "--armor"]),
    ("gpg --sign --encrypt -z0", ["-z0"]),
    ("gpg --sign --encrypt (compressed)", []),
)


def large(
    alice: Path,
    sink: LoopbackSink,
    mb: int,
    work: Path,
    *,
    dkim: bool = False,
    before: Path | None = None,
) -> dict[str, Any]:
    """One round: the gpg peers, then (``before``: a checkout of another tree, run
    from it first, interleaved) ``certmail send`` of the same file."""
    data = work / f"attach-{mb}.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    gnupg = alice / "gnupg"
    peers: dict[str, tuple[float, int, float]] = {}
    for label, extra in GPG_PEERS:
        gpg_cmd = ["gpg", "--homedir", str(gnupg), "--batch", "--yes", "--sign", "--encrypt"]
        gpg_cmd += [*extra, "-u", ALICE, "-r", BOB, "-o", str(work / "out.gpg"), str(data)]
        peers[label] = timed_child(gpg_cmd, dict(os.environ))
    gpg_wall, gpg_rss, gpg_cpu = peers[GPG_PEERS[0][0]]
    env = {
        **bytecode_env(),
        "CERTMAIL_HOME": str(alice),
        "CERTMAIL_EMAIL": ALICE,
        "CERTMAIL_SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
    }
    env.pop("CERTMAIL_CLAMD", None)
    dkim_dir = alice / "dkim"
    if dkim and not dkim_dir.is_dir():
        from keys.dkim import generate_dkim_key

        generate_dkim_key(dkim_dir, ALICE.partition("@")[2], "bench", "ed25519")
    elif not dkim and dkim_dir.is_dir():
        shutil.rmtree(dkim_dir)
    cm_cmd = [
        sys.executable,
        "-m",
        "certmail.cli.main",
        "send",
        "--to",
        BOB,
        "--subject",
        "bench",
        "--attach",
        str(data),
        "--no-notarize",
        "--via",
        "smtp",
        "--body-file",
        str(data.parent / "body.txt"),
    ]
    (data.parent / "body.txt").write_text("big one\n")
    old = None
    if before is not None:
        old_env = {**env, **bytecode_env(before), "PYTHONPATH": str(before)}
        old = timed_child(cm_cmd, old_env, cwd=before)  # -m puts the cwd first on sys.path
    cm_wall, cm_rss, cm_cpu = timed_child(cm_cmd, env)
    data.unlink()
    return {
        "before": old,
        "mb": mb,
        "gpg": gpg_wall,
        "certmail": cm_wall,
        "ratio": cm_wall / gpg_wall,
        "rss_mb": cm_rss / 1024,
        "gpg_rss_mb": gpg_rss / 1024,
        "gpg_cpu": gpg_cpu,
        "cpu": cm_cpu,
        "peers": peers,
    }


class StageClock:
    """Wall and CPU seconds (this process plus the children it waited for) per stage."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.order: list[str] = []

    @staticmethod
    def _cpu() -> tuple[float, float]:
        """(CPU s of this process, CPU s of the children it waited for)."""
        import resource

        s, c = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime

    def wrap(self, name: str, fn: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            t, c = time.perf_counter(), self._cpu()
            try:
                return fn(*a, **kw)
            finally:
                if name not in self.order:
                    self.order.append(name)
                own, children = self._cpu()
                spent = self.spent[name]
                spent[0] += time.perf_counter() - t
                spent[1] += own - c[0]
                spent[2] += children - c[1]

        return wrapped


def stages(alice: Path, sink: LoopbackSink, mb: int, work: Path, *, dkim: bool) -> StageClock:
    """One in-process send of an ``mb`` MB attachment, timed stage by stage.

    The stages nest: "seal" contains the compose and gpg stages (which overlap,
    as compose streams into gpg), "send (total)" contains everything.
    """
    import certmail.api as api
    import certmail.seal as seal_module
    import certmail.signer as signer_module
    from certmail import outbox
    from certmail.ledger import Ledger
    from certmail.pipeline import EncryptPipeline

    data = work / f"stage-{mb}.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    dkim_dir = alice / "dkim"
    if dkim and not dkim_dir.is_dir():
        from keys.dkim import generate_dkim_key

        generate_dkim_key(dkim_dir, ALICE.partition("@")[2], "bench", "ed25519")
    elif not dkim and dkim_dir.is_dir():
        shutil.rmtree(dkim_dir)
    clock = StageClock()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, name: str) -> None:
        fn = getattr(owner, attr)
        saved.append((owner, attr, fn))
        setattr(owner, attr, clock.wrap(name, fn))

    patch(api.Certmail, "scan_attachments", "scan")
    patch(seal_module, "compose_inner", "compose (inner MIME, base64)")
    patch(EncryptPipeline, "run", "gpg: sign + encrypt + armor + self-check")
    patch(signer_module.Sealer, "seal", "seal (total)")
    patch(seal_module, "_prepend_dkim", "DKIM sign + prepend + sha256")
    patch(signer_module.Sealer, "dkim_check", "DKIM check")
    patch(Ledger, "enqueue", "ledger (store + fsync)")
    patch(outbox.Outbox, "deliver", "SMTP")
    settings = Settings(
        home=alice,
        email=ALICE,
        name="Alice",
        smtp_url=f"smtp://127.0.0.1:{sink.port}",
        via="smtp",
    )
    try:
        with api.Certmail(settings) as cm:
            send = clock.wrap("send (total)", cm.send)
            send(
                to=[BOB],
                subject="stages",
                body="big one\n",
                attachments=[str(data)],
                notarize=False,
            )
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)
        data.unlink()
    return clock


def print_stages(clock: StageClock, title: str) -> None:
    print(f"\n| {title} | wall s | CPU s | of which certmail | of which gpg, base64 |")
    print("|---|---:|---:|---:|---:|")
    for name in clock.order:
        wall, own, children = clock.spent[name]
        print(f"| {name} | {wall:6.2f} | {own + children:5.2f} | {own:5.2f} | {children:5.2f} |")


def print_large(r: dict[str, Any], title: str) -> None:
    print(f"| {title} | wall s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for label, (wall, rss_kib, cpu) in r["peers"].items():
        print(f"| {label} | {wall:6.2f} | {cpu:5.2f} | {rss_kib / 1024:11.1f} |")
    if r.get("before") is not None:
        wall, rss_kib, cpu = r["before"]
        print(f"| certmail send, before | {wall:6.2f} | {cpu:5.2f} | {rss_kib / 1024:11.1f} |")
    print(
        f"| certmail send (--no-notarize) | {r['certmail']:6.2f} | {r['cpu']:5.2f} | "
        f"{r['rss_mb']:11.1f} |"
    )


def print_medians(rounds: list[dict[str, Any]]) -> None:
    """Medians over the rounds of :func:`large` (each with its own peer run)."""

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    cpu_ratio = statistics.median(r["cpu"] / r["gpg_cpu"] for r in rounds)
    if rounds[0].get("before") is not None:
        old_cpu = statistics.median(r["before"][2] for r in rounds)
        old_wall = statistics.median(r["before"][0] for r in rounds)
        old_ratio = statistics.median(r["before"][2] / r["gpg_cpu"] for r in rounds)
        print(
            f"before: {old_wall:.2f} s wall, {old_cpu:.2f} CPU s, "
            f"{old_ratio:.2f} CPU / peer (median of the rounds)"
        )
    print(
        f"medians of {len(rounds)} rounds: peer {med('gpg'):.2f} s wall, "
        f"{med('gpg_cpu'):.2f} CPU s; "
        f"certmail {med('certmail'):.2f} s wall, {med('cpu'):.2f} CPU s; "
        f"ratio {med('ratio'):.2f} wall, {cpu_ratio:.2f} CPU"
    )


def bulk(alice: Path, sink: LoopbackSink, n: int, work: Path) -> dict[str, Any]:
    import certmail.api as api
    import certmail.seal as seal_module
    from certmail import notary_client, outbox
    from certmail import signer as sealing
    from certmail.pipeline import EncryptPipeline
    from tests.fixtures.notary import NotaryProcess, init_notary_dir

    nd = init_notary_dir(work / "notary")
    notary = NotaryProcess(nd)
    notary.start()
    try:
        token = notary.token_for(ALICE)
        settings = Settings(
            home=alice,
            email=ALICE,
            name="Alice",
            smtp_url=f"smtp://127.0.0.1:{sink.port}",
            notary_url=notary.url,
            notary_token=token,
            via="smtp",
        )
        spent: dict[str, float] = defaultdict(float)

        def timer(name: str, fn: Any) -> Any:
            def wrapped(*a: Any, **kw: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    spent[name] += time.perf_counter() - t

            return wrapped

        kr_cls = Keyring
        seal_module.compose_inner = timer(
            "compose (MIME, base64, manifest)",  # type: ignore
            seal_module.compose_inner,
        )  # type: ignore[attr-defined]
        EncryptPipeline.run = timer(  # type: ignore
            "gpg pipeline: sign + encrypt + decrypt-check + verify", EncryptPipeline.run
        )
        kr_cls.verify_detached_file = timer(
            "  of which: signature verify",  # type: ignore
            kr_cls.verify_detached_file,
        )
        kr_cls.micalg = timer("gpg key lookups", kr_cls.micalg)  # type: ignore
        kr_cls.encryption_key = timer("gpg key lookups", kr_cls.encryption_key)  # type: ignore
        kr_cls.signing_key = timer("gpg key lookups", kr_cls.signing_key)  # type: ignore
        kr_cls.export_public = timer("gpg key lookups", kr_cls.export_public)  # type: ignore
        sealing.seal = timer("seal (total)", seal_module.seal)  # type: ignore
        outbox.send_file = timer("smtp", outbox.send_file)  # type: ignore
        notary_client.NotaryClient.notarize = timer(  # type: ignore
            "notarize (HTTP + receipt check)", notary_client.NotaryClient.notarize
        )
        before = sink.messages
        t = time.perf_counter()
        with api.Certmail(settings) as cm:
            for i in range(n):
                r = cm.send(to=[BOB], subject=f"bulk {i}", body=f"message {i}\n")
                assert r.receipts
        wall = time.perf_counter() - t
        assert sink.messages - before == n
    finally:
        notary.stop()
    return {"n": n, "wall": wall, "per_min": n / wall * 60, "spent": dict(spent)}


def binary_cte(alice: Path, mb: int, work: Path, rounds: int = 3) -> None:
    """The pipeline (:class:`certmail.pipeline.EncryptPipeline`) with the inner entity as
    today (base64 attachment) and with the attachment as raw bytes (a binary
    Content-Transfer-Encoding, a format certmail does not write): CPU s (this
    process and its children) and the message size, interleaved."""
    import hashlib
    import resource

    from certmail.compose import Headers, ScanRecord, compose_inner
    from certmail.pipeline import EncryptPipeline
    from certmail.rfc3156 import OBSCURED_SUBJECT

    kr = Keyring(alice / "gnupg")
    data = work / f"cte-{mb}.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    headers = Headers(ALICE, (BOB,), "x", "<m@example.org>", "Mon, 01 Jan 2024 00:00:00 +0000")
    fprs = [kr.encryption_key(BOB), kr.encryption_key(ALICE)]
    kr.micalg(ALICE)

    def cpu() -> float:
        s = resource.getrusage(resource.RUSAGE_SELF)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def base64_inner(out: Any) -> Any:
        scanned = [(data, ScanRecord("clean"))]
        return compose_inner(
            out, headers, b"big one\n", scanned, hp="cipher", outer_subject=OBSCURED_SUBJECT
        )

    def binary_inner(out: Any) -> str:
        out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"Content-Transfer-Encoding: binary\r\n\r\n")
        h = hashlib.sha256()
        with data.open("rb") as f:
            while c := f.read(1 << 20):
                h.update(c)
                out.write(c)
        return h.hexdigest()

    print(f"| {mb} MB attachment, pipeline only | round | wall s | CPU s | message MB |")
    print("|---|---:|---:|---:|---:|")
    for rnd in range(rounds):
        for name, inner in (("base64 (as sent)", base64_inner), ("binary CTE", binary_inner)):
            p = EncryptPipeline(kr, work / "inner", fprs, signer=ALICE, micalg=None,
                                payload_head=b"",
                                boundary="b", write_inner=inner)  # fmt: skip
            t, c = time.perf_counter(), cpu()
            _, size = p.run(work / "cte.eml", ["From: " + ALICE])
            wall, spent = time.perf_counter() - t, cpu() - c
            print(f"| {name} | {rnd + 1} | {wall:6.2f} | {spent:5.2f} | {size / 1e6:6.1f} |")
    data.unlink()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=DEFAULT_MB)
    ap.add_argument("--rss-mb", type=int, default=None, help="default: 2 x --mb")
    ap.add_argument("--bulk", type=int, default=200)
    ap.add_argument("--stages", action="store_true", help="only the per-stage timing")
    ap.add_argument("--runs", type=int, default=1, help="rounds of the --mb send and its peer")
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of another tree (git archive) whose send runs in each round too",
    )
    ap.add_argument(
        "--cte", action="store_true", help="only the pipeline: base64 against binary attachments"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-send-"))
    alice, bob = identities(work)
    sink = LoopbackSink()
    try:
        if args.cte:
            binary_cte(alice, args.mb, work)
            return 0
        if args.stages:
            print_stages(stages(alice, sink, args.mb, work, dkim=False), f"{args.mb} MB, stage")
            rss_mb = 2 * args.mb if args.rss_mb is None else args.rss_mb
            if rss_mb:
                clock = stages(alice, sink, rss_mb, work, dkim=True)
                print_stages(clock, f"{rss_mb} MB DKIM-signed, stage")
            return 0
        rounds = [
            large(alice, sink, args.mb, work, before=args.before) for _ in range(max(1, args.runs))
        ]
        for i, big in enumerate(rounds):
            print_large(big, f"{args.mb} MB attachment, round {i + 1} of {len(rounds)}")
            print(
                f"\nratio certmail / ({GPG_PEERS[0][0]}): {big['ratio']:.2f} wall, "
                f"{big['cpu'] / big['gpg_cpu']:.2f} CPU (target <= 1.5 at 100 MB)\n"
            )
        if len(rounds) > 1:
            print_medians(rounds)
        rss_mb = 2 * args.mb if args.rss_mb is None else args.rss_mb
        if rss_mb:
            rss = large(alice, sink, rss_mb, work, dkim=True)
            print()
            print_large(rss, f"{rss_mb} MB attachment, DKIM-signed")
            print(
                f"\n{rss_mb} MB DKIM-signed: ratio {rss['ratio']:.2f} wall, "
                f"{rss['cpu'] / rss['gpg_cpu']:.2f} CPU; peak RSS {rss['rss_mb']:.1f} MB "
                "(target < 300 MB)"
            )
        if args.bulk:
            b = bulk(alice, sink, args.bulk, work)
            print(
                f"\nbulk: {b['n']} certified messages in {b['wall']:.1f} s = "
                f"{b['per_min']:.0f}/min, {b['n'] / b['wall']:.1f}/s (target >= 200/min)"
            )
            print("| where the time goes              | total s | ms/message |")
            print("|----------------------------------|--------:|-----------:|")
            for k, v in sorted(b["spent"].items(), key=lambda kv: -kv[1]):
                print(f"| {k:<32} | {v:7.2f} | {v / b['n'] * 1000:10.1f} |")
    finally:
        for h in (alice, bob):
            subprocess.run(
                ["gpgconf", "--homedir", str(h / "gnupg"), "--kill", "all"],
                check=False,
                capture_output=True,
            )
            shutil.rmtree(h, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
