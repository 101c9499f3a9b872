"""Benchmark `certmail campaign send` beside a one-process shell loop of gpg.

N recipients, each with their own key. Ours: `certmail campaign send` (a child
process; sign, encrypt to the recipient and to self, the attachment scanned
once at create, re-verify, submit through a real `certmail notary serve` relay
which notarizes each message and relays it to a loopback aiosmtpd server,
durable state per recipient). The peer, in the same run, over the same
rendered messages: a bash loop of `gpg --batch --sign --encrypt -r RECIPIENT
-r SELF` (sign and encrypt only: no notary, no SMTP, no state). Prints
messages/s for both, the ratio (target >= 1.5) and, from `--json` events, where
the time goes per message (sealing vs hand-over, seconds inside a worker).

    .venv/bin/python benchmarks/bench_campaign.py [--n 60] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from certmail.config import load_settings  # noqa: E402
from keys.gpg import Keyring  # noqa: E402
from tests.fixtures.campaign import kill_agent, make_recipients, write_csv  # noqa: E402
from tests.fixtures.cli import CERTMAIL, clean_env  # noqa: E402
from tests.fixtures.notary import (  # noqa: E402
    NotaryProcess,
    free_port,
    init_notary_dir,
    relay_args,
)
from tests.fixtures.smtp import SmtpSink  # noqa: E402

ALICE = "alice@example.org"
BODY = "Dear {{ name }},\nthe rent of flat {{ flat }} changes on 1 January.\n" + "x" * 2000 + "\n"


def child_cpu() -> float:
    """CPU seconds (user + system) of the waited-for children so far (gpg included)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def shell_loop(work: Path, gnupghome: Path, emails: list[str]) -> float:
    """The peer: one bash process running gpg once per message; seconds."""
    msgs = work / "peer"
    msgs.mkdir()
    for i in range(len(emails)):
        body = BODY.replace("{{ name }}", f"Tenant {i}").replace("{{ flat }}", str(i))
        (msgs / f"{i}.txt").write_text(body)
    pairs = "\n".join(f"{i} {e}" for i, e in enumerate(emails))
    script = (
        'while read i r; do gpg --homedir "$G" --batch --yes --armor --sign --encrypt '
        '-r "$r" -r "$SELF" -o "$D/$i.asc" "$D/$i.txt" || exit 1; done'
    )
    env = {**os.environ, "G": str(gnupghome), "SELF": ALICE, "D": str(msgs)}
    t = time.perf_counter()
    subprocess.run(["bash", "-c", script], input=pairs.encode(), env=env, check=True)
    return time.perf_counter() - t


def campaign(
    env: dict[str, str], work: Path, name: str, csv_path: Path, att: Path, concurrency: int
) -> tuple[float, list[dict[str, object]]]:
    (work / "body.txt").write_text(BODY)
    subprocess.run(
        [
            *CERTMAIL,
            "campaign",
            "create",
            name,
            "--recipients",
            str(csv_path),
            "--subject",
            "Rent notice for {{ name }}",
            "--body-file",
            str(work / "body.txt"),
            "--attach",
            str(att),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    t = time.perf_counter()
    p = subprocess.run(
        [*CERTMAIL, "campaign", "send", name, "--json", "--concurrency", str(concurrency)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"campaign send failed: {p.stderr}")
    events = [json.loads(x) for x in p.stdout.splitlines() if '"state"' in x]
    bad = [e for e in events if e["state"] != "accepted"]
    if bad:
        raise SystemExit(f"not all accepted: {bad[:3]}")
    return elapsed, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bc", dir="/tmp"))
    home = work / "home"
    settings = load_settings(home)
    gh = Path(settings.gnupghome)
    gh.mkdir(parents=True, mode=0o700)
    Keyring(gh).generate_identity(ALICE, "Alice")
    rs = make_recipients(args.n, gh)
    sink = SmtpSink(work)
    sink.start()
    ndir = init_notary_dir(work / "notary")
    notary = NotaryProcess(ndir)
    token = notary.token_for(ALICE)
    notary.start(relay_args(free_port(), sink.port))
    try:
        env = clean_env(
            home,
            CERTMAIL_EMAIL=ALICE,
            CERTMAIL_NAME="Alice",
            CERTMAIL_NOTARY_URL=notary.url,
            CERTMAIL_NOTARY_TOKEN=token,
        )
        csv_path = write_csv(
            work / "r.csv",
            [{"email": e, "name": f"Tenant {i}", "flat": str(i)} for i, e in enumerate(rs.emails)],
        )
        att = work / "notice.pdf"
        att.write_bytes(b"%PDF-1.4 notice\n" * 200)
        c0 = child_cpu()
        peer = shell_loop(work, gh, rs.emails)
        c1 = child_cpu()
        ours, events = campaign(env, work, "bench", csv_path, att, args.concurrency)
        c2 = child_cpu()
        one, events1 = campaign(env, work, "bench1", csv_path, att, 1)
        c3 = child_cpu()
    finally:
        notary.stop()
        sink.stop()
        kill_agent(gh)
        kill_agent(rs.home)
    n = args.n
    print(
        f"campaign of {n} recipients (2 KB body, 3 KB attachment), this machine "
        f"({os.cpu_count()} cores)"
    )
    print(f"{'':44} {'msgs/s':>8} {'wall s':>8} {'CPU ms/msg':>11}")
    cpu = [(c1 - c0) / n * 1000, (c2 - c1) / n * 1000, (c3 - c2) / n * 1000]
    print(
        f"{'gpg --sign --encrypt shell loop (peer)':44} {n / peer:8.1f} {peer:8.2f} {cpu[0]:11.1f}"
    )
    print(
        f"{'certmail campaign send, --concurrency ' + str(args.concurrency):44} "
        f"{n / ours:8.1f} {ours:8.2f} {cpu[1]:11.1f}"
    )
    print(
        f"{'certmail campaign send, --concurrency 1':44} {n / one:8.1f} {one:8.2f} {cpu[2]:11.1f}"
    )
    print("(CPU: the command and its child processes, gpg included; not gpg-agent, not the notary)")
    print(f"ratio ours / peer: {peer / ours:.2f}x (target >= 1.5x); one worker: {peer / one:.2f}x")
    for label, evs in (("concurrency " + str(args.concurrency), events), ("one worker", events1)):
        seal = statistics.mean(float(e["seal_s"]) for e in evs)  # type: ignore[arg-type]
        sub = statistics.mean(float(e["submit_s"]) for e in evs)  # type: ignore[arg-type]
        print(
            f"per message, {label}: seal (compose, sign, encrypt, re-verify, store) "
            f"{seal * 1000:.0f} ms, hand-over (relay SMTP + acceptance receipt) "
            f"{sub * 1000:.0f} ms"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
