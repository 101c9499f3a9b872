"""Tile requests per second through the real ``certmail notary serve`` (issue 14: >= 5,000/s).

A notary is initialised in a temporary directory, grown to 70,000 entries through
``POST /v1/notarize/batch``, and served by ``certmail notary serve`` (one process,
then ``--workers 2``). wrk (C, one thread, 16 keep-alive connections) requests its
tiles round-robin over every tile of the tree (273 full level-0 tiles, the
partial ones, level 1 and 2), beside, in the same run:

- ``GET /v1/checkpoint`` and ``GET /checkpoint`` on the same server (the notary's
  own cheapest dynamic answer);
- the same tiles from a raw ASGI app holding them in a dict, under the same
  uvicorn (uvloop, httptools): the ceiling of the server stack on this machine;
- the same tiles written to files and served by ``python -m http.server``
  (``--protocol HTTP/1.1``, keep-alive), the static file server at hand (no nginx
  here); it writes headers and body separately, so Nagle's algorithm and delayed
  ACKs hold each answer back: a floor, not a fair rival.

Before each run the tiles are checked to reproduce the checkpoint's root; non-2xx
answers and socket errors are counted and printed. wrk comes from Debian
(``apt-get install -y wrk``; benchmarks/run_all.py installs it when missing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notary.checkpoint import Checkpoint  # noqa: E402
from notary.merkle import tree_hash  # noqa: E402
from notary.tiles import Tile, TileHashReader, tiles_for_size  # noqa: E402

CERTMAIL = [sys.executable, "-m", "certmail.cli.main"]
TARGET = 5000.0
ENV_STATIC = "CERTMAIL_BENCH_TILES_DIR"


def make_static_app() -> Any:
    """uvicorn factory: a raw ASGI app answering the tile files from memory (the ceiling)."""
    root = Path(os.environ[ENV_STATIC])
    files = {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    head = [(b"content-type", b"application/octet-stream")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = files.get(scope["path"])
        status = 200 if body is not None else 404
        body = body or b""
        headers = [*head, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def serve(directory: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [*CERTMAIL, "notary", "serve", "--dir", str(directory), "--http", f"127.0.0.1:{port}"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/healthz", proc)
    time.sleep(1.0 if workers > 1 else 0.2)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def grow(url: str, token: str, entries: int) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=300) as c:
        for start in range(0, entries, 5_000):
            items = [
                {"sha256": hashlib.sha256(b"%d" % i).hexdigest(), "message_id": f"<{i}@bench>"}
                for i in range(start, min(entries, start + 5_000))
            ]
            r = c.post("/v1/notarize/batch", json={"items": items, "tst": False}, headers=auth)
            r.raise_for_status()


def check_tiles(base: str, size: int, root: bytes) -> None:
    """The tiles the server answers reproduce the checkpoint's root."""
    with httpx.Client(base_url=base, timeout=30) as c:

        def fetch(tiles: Sequence[Tile]) -> list[bytes]:
            out = []
            for t in tiles:
                r = c.get("/" + t.path())
                r.raise_for_status()
                out.append(r.content)
            return out

        if tree_hash(size, TileHashReader(size, fetch)) != root:
            raise SystemExit(f"{base}: tiles do not reproduce the checkpoint root")


def lua_paths(work: Path, paths: Sequence[str]) -> Path:
    lua = work / f"paths-{len(paths)}.lua"
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    lua.write_text(
        "local paths = {\n" + quoted + "\n}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n"
    )
    return lua


def wrk(url: str, lua: Path, connections: int, seconds: float) -> tuple[float, int]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(lua), url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    failures = int(bad.group(1)) if bad else 0
    if errors:
        failures += sum(int(x) for x in re.findall(r"\d+", errors.group(1)))
    return float(m.group(1)), failures


def write_static(work: Path, base: str, tiles: Sequence[Tile]) -> Path:
    root = work / "static"
    with httpx.Client(base_url=base, timeout=30) as c:
        for t in tiles:
            path = root / t.path()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(c.get("/" + t.path()).content)
        (root / "checkpoint").write_bytes(c.get("/checkpoint").content)
    return root


Row = tuple[str, float, int]


def build(work: Path, entries: int) -> tuple[Path, Checkpoint, list[Tile], Path]:
    """A notary grown to ``entries``; its checkpoint, tiles, and the tiles as files."""
    d = work / "notary"
    init = [*CERTMAIL, "notary", "init", "--dir", str(d), "--origin", "bench.test/log"]
    subprocess.run(init, check=True, capture_output=True)
    add = [*CERTMAIL, "notary", "accounts", "add", "bench@example.test", "--dir", str(d)]
    token = subprocess.run(add, check=True, capture_output=True, text=True).stdout.split()[-1]
    proc, url = serve(d, 1)
    try:
        grow(url, token, entries)
        note = httpx.get(url + "/checkpoint").content
        cp = Checkpoint.from_text(note.decode().split("\n\n")[0] + "\n")
        tiles = tiles_for_size(cp.size)
        static = write_static(work, url, tiles)
    finally:
        stop(proc)
    return d, cp, tiles, static


def notary_runs(
    d: Path, cp: Checkpoint, luas: dict[str, Path], connections: int, seconds: float
) -> list[Row]:
    rows: list[Row] = []
    for workers in (1, 2):
        proc, url = serve(d, workers)
        try:
            check_tiles(url, cp.size, cp.root_hash)
            wrk(url, luas["GET /tile/..."], connections, 1)  # warm-up: the tile cache fills
            label = f"--workers {workers}" if workers > 1 else "one process"
            for what, lua in luas.items():
                rps, failures = wrk(url, lua, connections, seconds)
                rows.append((f"notary serve ({label}): {what}", rps, failures))
        finally:
            stop(proc)
    return rows


def static_run(static: Path, cp: Checkpoint, lua: Path, connections: int, seconds: float) -> Row:
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", "--protocol", "HTTP/1.1"]
    cmd += ["--bind", "127.0.0.1", str(port)]
    peer = subprocess.Popen(cmd, cwd=static, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/checkpoint", peer)
        check_tiles(url, cp.size, cp.root_hash)
        what = "peer: python -m http.server (the same tiles as files)"
        return (what, *wrk(url, lua, connections, seconds))
    finally:
        stop(peer)


def ceiling_run(static: Path, cp: Checkpoint, lua: Path, connections: int, seconds: float) -> Row:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench_tiles:make_static_app"]
    cmd += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    env = {**os.environ, ENV_STATIC: str(static)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url + "/checkpoint", proc)
        check_tiles(url, cp.size, cp.root_hash)
        what = "peer: raw ASGI dict of the tiles under uvicorn (its ceiling)"
        return (what, *wrk(url, lua, connections, seconds))
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--entries", type=int, default=70_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        work = Path(tmp)
        d, cp, tiles, static = build(work, args.entries)
        print(f"tree of {cp.size} entries: {len(tiles)} tiles, requested round-robin")
        luas = {
            "GET /tile/...": lua_paths(work, ["/" + t.path() for t in tiles]),
            "GET /v1/checkpoint": lua_paths(work, ["/v1/checkpoint"]),
            "GET /checkpoint": lua_paths(work, ["/checkpoint"]),
        }
        rows = notary_runs(d, cp, luas, args.connections, args.seconds)
        rows.append(ceiling_run(static, cp, luas["GET /tile/..."], args.connections, args.seconds))
        rows.append(static_run(static, cp, luas["GET /tile/..."], args.connections, args.seconds))
    print(f"\n{'what':62} {'req/s':>10} {'failures':>9}")
    for what, rps, failures in rows:
        print(f"{what:62} {rps:10.0f} {failures:9d}")
    for label in ("one process", "--workers 2"):
        rps = next(r for w, r, _ in rows if label in w and "/tile/" in w)
        verdict = "meets" if rps >= TARGET else "misses"
        print(
            f"tiles, {label}, {args.connections} keep-alive connections: {rps:.0f}/s "
            f"({verdict} the {TARGET:.0f}/s target)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
