"""``mash-hub demo`` as a newcomer runs it: no configuration, set-up, then the hub serving."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mash_hub.users.service import STAFF_ROLES

PEOPLE = "300"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    return {**env, **extra}


def _demo(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", "demo", "--people", PEOPLE, *args],
        cwd=folder,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_sets_up_once_then_reuses_its_data_with_fresh_credentials(server_dir: Path) -> None:
    first = _demo(server_dir, "--no-serve", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["reused_existing_demo_data"] is False
    assert report["records"] > 200
    assert 0 < report["persons"] < report["records"]
    assert {a["role"] for a in report["accounts"]} == set(STAFF_ROLES)
    assert report["partner"]["api_key"].startswith("mash_pk_")
    credentials = Path(report["credentials_file"])
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert json.loads(credentials.read_text())["partner"] == report["partner"]

    second = _demo(server_dir, "--no-serve", "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["reused_existing_demo_data"] is True
    assert again["records"] == report["records"]
    assert again["persons"] == report["persons"]
    assert again["partner"]["api_key"] != report["partner"]["api_key"]
    assert {a["user"] for a in again["accounts"]} == {a["user"] for a in report["accounts"]}


def test_demo_refuses_an_external_database(server_dir: Path) -> None:
    result = _demo(
        server_dir, "--no-serve", MASH_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert result.returncode == 2
    assert "embedded default" in result.stderr
    assert not (server_dir / ".mash-hub" / "demo").exists()


def test_demo_serves_and_every_printed_credential_works(server_dir: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "demo", "--people", PEOPLE, "--port", str(port)],
        cwd=server_dir,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.3)
        assert ready, process.stderr.read() if process.stderr and process.poll() else "not ready"
        document = json.loads((server_dir / ".mash-hub/demo/credentials.json").read_text())
        for account in document["accounts"]:
            headers = {"Authorization": f"Bearer {account['token']}"}
            me = httpx.get(f"{base}/api/v1/me", headers=headers, timeout=10).json()
            assert (me["role"], me["agency"]) == (account["role"], account["agency"])
        partner = {"X-API-Key": document["partner"]["api_key"]}
        me = httpx.get(f"{base}/api/v1/me", headers=partner, timeout=10).json()
        assert (me["kind"], me["agency"]) == ("partner", document["partner"]["agency"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
