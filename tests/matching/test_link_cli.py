"""``mash-hub link train / run / evaluate`` as an operator runs them (subprocess, real server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mash_hub.synth import generate

FILES = {"police": "police.csv", "council": "council.csv", "social_care": "social_care.json"}


def run_hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_train_run_evaluate_from_the_command_line(hub_env: dict[str, str], tmp_path: Path) -> None:
    assert run_hub("db", "upgrade", env=hub_env).returncode == 0
    assert run_hub("keys", "init", env=hub_env).returncode == 0
    generate(people=300, seed=5, out_dir=tmp_path / "synth")
    for feed, name in FILES.items():
        result = run_hub("ingest", "--feed", feed, str(tmp_path / "synth" / name), env=hub_env)
        assert result.returncode == 0, result.stderr
    model = tmp_path / "model.json"
    missing = run_hub("link", "run", "--model", str(model), env=hub_env)
    assert missing.returncode == 2 and "link train" in missing.stderr
    trained = run_hub("link", "train", "--model", str(model), "--json", env=hub_env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(model.read_text())["version"] == 1
    ran = run_hub("link", "run", "--model", str(model), "--json", env=hub_env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["records"] > 200
    scored = run_hub(
        "link", "evaluate", "--truth", str(tmp_path / "synth" / "truth.csv"), "--json", env=hub_env
    )
    assert scored.returncode == 0, scored.stderr
    metrics = json.loads(scored.stdout)
    assert metrics["false_merge_people"] == 0
    assert metrics["cluster"]["recall"] > 0.9
