"""The ``synth`` command, registered on a throwaway Typer app as the main CLI does."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mash_hub.cli.synth import synth
from tests.clirunner import cli_runner

app = typer.Typer()
app.command("synth")(synth)


@app.callback()
def _root() -> None:
    """Force sub-command mode so the test calls ``synth`` by name."""


_runner = cli_runner


def test_json_summary_matches_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _runner().invoke(
        app, ["synth", "--people", "300", "--seed", "9", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["people"] == 300 and summary["seed"] == 9
    for name, path in summary["files"].items():
        assert Path(path).is_file(), name
    truth_rows = (out / "truth.csv").read_text(encoding="utf-8").count("\n") - 1
    assert truth_rows == sum(summary["records"].values())
    police_rows = (out / "police.csv").read_text(encoding="utf-8")
    assert summary["records"]["police"] == sum(
        1 for line in police_rows.splitlines()[1:] if line.startswith("NOM")
    )


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    args = ["synth", "--people", "50", "--out", str(tmp_path), "--json"]
    assert _runner().invoke(app, args).exit_code == 0
    again = _runner().invoke(app, args)
    assert again.exit_code == 2
    assert "--force" in again.stderr
    assert _runner().invoke(app, [*args, "--force"]).exit_code == 0


def test_bad_rates_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "rates.json"
    bad.write_text(json.dumps({"typo_everywhere": 0.2}), encoding="utf-8")
    result = _runner().invoke(app, ["synth", "--out", str(tmp_path / "o"), "--rates", str(bad)])
    assert result.exit_code == 2
    assert "typo_everywhere" in result.stderr
    bad.write_text("{not json", encoding="utf-8")
    result = _runner().invoke(app, ["synth", "--out", str(tmp_path / "o"), "--rates", str(bad)])
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr
    bad.write_text(json.dumps({"dob_typo": 3}), encoding="utf-8")
    result = _runner().invoke(app, ["synth", "--out", str(tmp_path / "o"), "--rates", str(bad)])
    assert result.exit_code == 2
    assert "dob_typo" in result.stderr


def test_rates_file_and_scale_apply(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"nickname": 0.5}), encoding="utf-8")
    result = _runner().invoke(
        app,
        [
            "synth",
            "--people",
            "40",
            "--out",
            str(tmp_path / "o"),
            "--rates",
            str(rates),
            "--error-scale",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rates"]["nickname"] == 0.5
    assert summary["rates"]["dob_typo"] == 0.024


def test_usage_errors(tmp_path: Path) -> None:
    result = _runner().invoke(app, ["synth", "--people", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    result = _runner().invoke(app, ["synth", "--error-scale", "-1", "--out", str(tmp_path)])
    assert result.exit_code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = _runner().invoke(app, ["synth", "--out", str(blocker)])
    assert result.exit_code == 2


def test_unwritable_out_dir_exits_1(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        probe = parent / "probe"
        try:
            probe.mkdir()
        except PermissionError:
            pass
        else:  # running as root: permissions are not enforced
            probe.rmdir()
            blocker = tmp_path / "blocker"
            blocker.write_text("x", encoding="utf-8")
            result = _runner().invoke(app, ["synth", "--out", str(blocker / "sub")])
            assert result.exit_code == 1
            return
        result = _runner().invoke(app, ["synth", "--out", str(parent / "sub")])
        assert result.exit_code == 1
        assert "cannot write" in result.stderr
    finally:
        parent.chmod(0o700)


def test_progress_mode_reports_on_stderr(tmp_path: Path) -> None:
    result = _runner().invoke(app, ["synth", "--people", "100", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "wrote 100 people" in result.stderr
