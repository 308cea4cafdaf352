"""Load on a running hub: concurrent person searches and referral intake over real HTTP.

    python benchmarks/bench_load.py --people 200000 [--clients 16] [--seconds 30]
        [--data-dir DIR] [--referrals 1000] [--workers N] [--only search|referrals]
        [--profile DIR] [--json]
    python benchmarks/bench_load.py --quick [--workers N] [--json]

``--quick`` is the check to run before and after any change to search or intake: 10,000
people, searches at 1 and at 16 clients, then referrals at 1 and at 16 clients, 2.5 s each
(about 10 s of load; the hub is built in about 30 s the first time and reused in about 6 s
after). Any of ``--people``, ``--clients`` and ``--seconds`` given with it still wins. Without
``--quick`` the defaults are the 200,000-people scenario issue 15 measures, 30 s each.

Set-up is ``mash-hub demo --no-serve`` in ``--data-dir`` (kept between runs: the first run
at 200,000 people takes several minutes, later runs reuse it), then ``mash-hub serve`` in a
child process. The load comes from ``--clients`` threads, each with its own keep-alive
connection, on the same 2-core machine as the server and its PostgreSQL, so the figures
are a floor for a real deployment, and noisy. Not part of the test run.

* Search: officers' queries built from the synthetic extracts (the benchmark knows the
  plaintext because it generated it), a third of them with a typo, a nickname-like first
  name change or a day/month swap. Reports p50/p95/p99 latency and requests per second.
* Referrals: a partner submitting referrals (one child each, drawn from the extracts so
  they match existing persons) with real-time matching. Reports accepted per second.

``--workers N`` runs ``mash-hub serve --workers N``; the default is one per core (a single
worker leaves a core idle: its Python holds one core at most). ``--profile DIR`` samples the server
processes with ``py-spy`` (``pip install py-spy``; not a project dependency) during each
scenario and writes collapsed stacks (``DIR/<scenario>-<clients>.txt``) of the threads holding
the GIL: where the server's Python time goes.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

PURPOSE = {"X-Purpose-Code": "mash_triage", "X-Purpose-Text": "Load benchmark search (synthetic)"}
# (people, clients, seconds per scenario): the full scenario and the quick one.
FULL = (200_000, [1, 16], 30.0)
QUICK = (10_000, [1, 16], 2.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    return {**env, "MASH_DATA_DIR": str(data_dir), "MASH_RATE_LIMIT_PER_MINUTE": "1000000"}


def load_average() -> Sequence[float]:
    """The machine's 1, 5 and 15 minute load averages: how busy the 2 cores were."""
    return [round(x, 2) for x in os.getloadavg()]


def set_up(data_dir: Path, people: int) -> tuple[dict[str, Any], float]:
    began = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mash_hub", "demo", "--people", str(people), "--no-serve", "--json"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo set-up failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout), time.perf_counter() - began


def queries(extracts: Path, n: int, seed: int) -> list[dict[str, str]]:
    """Search bodies from council records (names, date of birth, postcode), some perturbed."""
    rng = random.Random(seed)
    with (extracts / "council.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["date_of_birth"] and r["last_name"]]
    out = []
    for row in rng.sample(rows, min(n, len(rows))):
        given, family, dob = row["first_name"], row["last_name"], row["date_of_birth"]
        kind = rng.random()
        if kind < 0.11 and len(family) > 3:
            i = rng.randrange(1, len(family) - 1)
            family = family[:i] + family[i + 1] + family[i] + family[i + 2 :]
        elif kind < 0.22 and len(given) > 3:
            given = given[:3]
        elif kind < 0.33 and int(dob[8:10]) <= 12:
            dob = f"{dob[:4]}-{dob[8:10]}-{dob[5:7]}"
        body = {"given_name": given, "family_name": family, "date_of_birth": dob}
        if row["postcode"] and rng.random() < 0.5:
            body["postcode"] = row["postcode"]
        out.append(body)
    return out


def referral_body(row: dict[str, str], rng: random.Random) -> dict[str, Any]:
    """One child referred by a school, built from a council record (so it matches a person)."""
    address = {"line1": row["address_line_1"], "town": row["town"], "postcode": row["postcode"]}
    return {
        "subjects": [
            {
                "role": "child",
                "given_names": [row["first_name"]],
                "family_name": row["last_name"],
                "date_of_birth": row["date_of_birth"],
                "addresses": [address] if row["postcode"] else [],
            }
        ],
        "concerns": "Synthetic load-test referral: child arrived hungry and withdrawn.",
        "source": "2A",
        "primary_need": rng.choice(["N1", "N4", "N5"]),
        "factors": ["16A"],
        "referrer": {
            "name": "Synthetic Referrer",
            "job_title": "Designated safeguarding lead",
            "organisation": "Synthetic Primary School",
            "email": "dsl@school.example.org",
        },
        "consent": {"state": "given"},
    }


class Profiler:
    """``py-spy record`` of the server and its worker processes while a scenario runs."""

    def __init__(self, directory: Path | None, pid: int) -> None:
        self.directory = directory
        self.pid = pid

    def start(self, name: str, seconds: float) -> subprocess.Popen[bytes] | None:
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [
                "py-spy", "record", "--pid", str(self.pid), "--subprocesses", "--format", "raw",
                "--rate", "200", "--gil", "--duration", str(max(1, int(seconds))), "--nonblocking",
                "-o", str(self.directory / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip


def hub_cpu_ticks(server_pid: int, data_dir: Path) -> dict[int, int]:
    """CPU ticks (user + system, with reaped children's) of the server, its workers and the
    hub's PostgreSQL processes, by pid: what a request costs whatever else the machine runs."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    hub_postgres: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(f) for f in fields[11:15])
        if b"postgres" in cmdline and str(data_dir).encode() in cmdline:
            hub_postgres.add(pid)

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == server_pid or pid in hub_postgres:
                return True
            pid = parents.get(pid, 0)
        return False

    return {pid: n for pid, n in ticks.items() if ours(pid)}


def profiled(
    profiler: Profiler,
    name: str,
    seconds: float,
    run: Callable[[], dict[str, Any]],
    cpu: Callable[[], dict[int, int]] | None = None,
) -> dict[str, Any]:
    """``run``, sampled by ``profiler``; with ``cpu``, the hub's CPU milliseconds per
    request answered (a figure the machine's other load barely moves, unlike the rate)."""
    spy = profiler.start(name, seconds)
    before = cpu() if cpu is not None else {}
    try:
        result = run()
        if cpu is not None and result["ok"]:
            after = cpu()
            used = sum(n - before.get(pid, 0) for pid, n in after.items())
            tick = os.sysconf("SC_CLK_TCK")
            result["cpu_ms_per_request"] = round(1000 * used / tick / result["ok"], 1)
        return result
    finally:
        if spy is not None:
            spy.wait(timeout=seconds + 60)


def run_load(
    base: str,
    clients: int,
    seconds: float,
    make_request: Callable[[httpx.Client, int], httpx.Response],
    ok: Callable[[httpx.Response], bool],
    limit: int | None = None,
) -> dict[str, Any]:
    """``clients`` threads send requests back to back for ``seconds`` (or ``limit`` in all)."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = time.perf_counter() + seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.perf_counter() < stop:
                with lock:
                    i = next(counter)
                if limit is not None and i >= limit:
                    return
                began = time.perf_counter()
                response = make_request(client, i)
                elapsed = time.perf_counter() - began
                with lock:
                    if ok(response):
                        latencies.append(elapsed)
                    else:
                        key = str(response.status_code)
                        failures[key] = failures.get(key, 0) + 1

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {
        "clients": clients,
        "ok": len(ordered),
        "failed": failures,
        "seconds": round(wall, 1),
        "per_second": round(len(ordered) / wall, 1),
        "p50_ms": pct(0.50) if ordered else None,
        "p95_ms": pct(0.95) if ordered else None,
        "p99_ms": pct(0.99) if ordered else None,
        "mean_ms": round(1000 * statistics.fmean(ordered), 1) if ordered else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10,000 people, 2.5 s per scenario (about 10 s)"
    )
    parser.add_argument("--people", type=int, default=None, help="default 200,000")
    parser.add_argument("--clients", type=int, nargs="+", default=None, help="default 1 16")
    parser.add_argument("--seconds", type=float, default=None, help="per scenario; default 30")
    parser.add_argument("--referrals", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=Path(".bench-load"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", choices=["search", "referrals"], default=None)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    args.people = preset[0] if args.people is None else args.people
    args.clients = preset[1] if args.clients is None else args.clients
    args.seconds = preset[2] if args.seconds is None else args.seconds
    data_dir = args.data_dir.resolve() / str(args.people)
    report: dict[str, Any] = {"people": args.people, "scenario": "quick" if args.quick else "full"}
    demo, setup_seconds = set_up(data_dir, args.people)
    report["setup_seconds"] = round(setup_seconds, 1)
    report["records"], report["persons"] = demo["records"], demo["persons"]
    extracts = data_dir / "demo" / "extracts"
    officer = next(a["token"] for a in demo["accounts"] if a["role"] == "mash_officer")
    partner_key = demo["partner"]["api_key"]

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port)]
        + (["--workers", str(args.workers)] if args.workers > 1 else []),
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    profiler = Profiler(args.profile, server.pid)
    cpu = functools.partial(hub_cpu_ticks, server.pid, data_dir)
    report["workers"] = args.workers
    report["load_average_before"] = load_average()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise SystemExit("server did not become ready")
        bodies = queries(extracts, 5000, seed=11)
        staff = {"Authorization": f"Bearer {officer}", **PURPOSE}

        def search(client: httpx.Client, i: int) -> httpx.Response:
            return client.post(
                "/api/v1/persons/search", json=bodies[i % len(bodies)], headers=staff
            )

        def found(response: httpx.Response) -> bool:
            return response.status_code == 200

        for _ in range(4 * args.workers):  # warm each worker's caches (policy, model)
            search(httpx.Client(base_url=base, timeout=60), 0)
        if args.only != "referrals":
            report["search"] = [
                profiled(
                    profiler,
                    f"search-{n}",
                    args.seconds,
                    functools.partial(run_load, base, n, args.seconds, search, found),
                    cpu,
                )
                for n in args.clients
            ]
        with (extracts / "council.csv").open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["date_of_birth"]]
        rng = random.Random(5)
        chosen = rng.sample(rows, min(args.referrals, len(rows)))

        def referrer(run_tag: str) -> Callable[[httpx.Client, int], httpx.Response]:
            def refer(client: httpx.Client, i: int) -> httpx.Response:
                return client.post(
                    "/api/v1/referrals",
                    json=referral_body(chosen[i % len(chosen)], rng),
                    headers={"X-API-Key": partner_key, "Idempotency-Key": f"bench-{run_tag}-{i}"},
                )

            return refer

        def accepted(response: httpx.Response) -> bool:
            return response.status_code == 201

        if args.only != "search":
            report["referrals"] = [
                profiled(
                    profiler,
                    f"referrals-{n}",
                    args.seconds,
                    functools.partial(
                        run_load,
                        base,
                        n,
                        args.seconds,
                        referrer(uuid.uuid4().hex[:8]),
                        accepted,
                        limit=len(chosen),
                    ),
                    cpu,
                )
                for n in args.clients
            ]
        report["load_average_after"] = load_average()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if key in ("search", "referrals"):
                for run in value:
                    print(
                        f"{key:>20}: {run['clients']:>2} clients {run['per_second']:>7}/s"
                        f"  p50 {run['p50_ms']} ms  p95 {run['p95_ms']} ms  p99 {run['p99_ms']} ms"
                        f"  CPU {run.get('cpu_ms_per_request')} ms each"
                        f"  ({run['ok']} in {run['seconds']} s, failed {run['failed']})"
                    )
            else:
                print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
