"""A run directory you can trust: stages know their inputs, stale work is redone, one writer at a
time, a failed redo keeps the previous output, and every bad input is one line with exit 2.

Most tests swap cheap fake stages into ``pipeline.STAGES`` (the real data stage is kept: it takes
a fraction of a second); one test trains the real smoke SFT model twice.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from girl_lib import pipeline
from girl_lib.cli import main
from girl_lib.config import apply_overrides, resolve_profile
from girl_lib.errors import GirlError
from girl_lib.rundir import (LOCK, STARTED, atomic_write_text, link_stages, lock_run_dir, manifest_digest,
                             previous_dir, read_manifest, set_aside, stage_dir, write_manifest)
from girl_lib.world import FILES, KINDS, build_dataset

REPO = Path(__file__).resolve().parents[1]
DOWNSTREAM_OF_DATA = ("sft", "reward", "ppo", "genrec", "evaluate")


def _fake(name: str):
    def run(cfg, run_dir):
        out = stage_dir(run_dir, name)
        (out / "made.txt").write_text(f"{name} seed={cfg.seed} data.seed={cfg.data.seed}\n")
        return {"fake": name}
    return run


@pytest.fixture
def fake_stages(monkeypatch):
    """Every stage but data replaced by a function that writes one file."""
    table = tuple(s if s.name == "data" else replace(s, run=_fake(s.name)) for s in pipeline.STAGES)
    monkeypatch.setattr(pipeline, "STAGES", table)
    return table


def set_stage(monkeypatch, name: str, run) -> None:
    monkeypatch.setattr(pipeline, "STAGES", tuple(replace(s, run=run) if s.name == name else s
                                                  for s in pipeline.STAGES))


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def first_err(err: str) -> str:
    return err.strip().splitlines()[0] if err.strip() else ""


def said(out: str, stage: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"[girl] {stage}: ")]


# --------------------------------------------------------------------------------------------
# Stages know what they were made from
# --------------------------------------------------------------------------------------------
def test_manifest_records_settings_hash_and_upstream_digests(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    data_digest = manifest_digest(rd / "data")
    for name in DOWNSTREAM_OF_DATA:
        inputs = read_manifest(stage_dir(rd, name))["inputs"]
        assert inputs["upstream"]["data"] == data_digest
        assert len(inputs["settings_sha256"]) == 64 and inputs["settings"]
        assert not (stage_dir(rd, name) / STARTED).exists()
    sft = read_manifest(rd / "sft")["inputs"]
    assert "sft.learning_rate" in sft["settings"] and "generation.num_threads" not in sft["settings"]
    assert set(read_manifest(rd / "reward")["inputs"]["upstream"]) == {"data", "sft"}
    assert set(read_manifest(rd / "ppo")["inputs"]["upstream"]) == {"data", "sft", "reward"}
    assert set(read_manifest(rd / "eval")["inputs"]["upstream"]) == {"data", "sft", "reward", "ppo"}
    # A second `girl run` finds everything current.
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0 and all("skipped" in said(out, s)[-1] for s in ("data", *DOWNSTREAM_OF_DATA))


def test_force_on_data_makes_every_downstream_stage_stale(fake_stages, tmp_path, capsys):
    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    code, out, _ = cli(capsys, "data", "--profile", "smoke", "--run-dir", rd, "--force")
    assert code == 0
    assert said(out, "data")[0] == "[girl] data: --force; redoing (the previous output stays until the new one is complete)"
    # The stage command of a downstream stage refuses to build on a stale upstream stage ...
    code, _, err = cli(capsys, "ppo", "--profile", "smoke", "--run-dir", rd)
    assert code == 2 and first_err(err) == (
        "girl ppo: error: ppo reads the sft stage, which is out of date (data changed since it was trained); "
        "run 'girl sft' with the same --profile/--set/--run-dir first (or 'girl run')")
    # ... and `girl run` redoes every one of them, saying why.
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)
    assert code == 0
    assert said(out, "data")[0].endswith("skipped (use --force to redo)")
    for name in ("sft", "reward", "ppo", "genrec"):
        assert said(out, name)[0] == f"[girl] {name}: data changed since it was trained; redoing"
    assert said(out, "evaluate")[0] == "[girl] evaluate: data changed since it was run; redoing"
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)
    assert all("skipped" in said(out, s)[-1] for s in ("data", *DOWNSTREAM_OF_DATA))


def test_force_on_sft_makes_what_reads_it_stale_only(fake_stages, tmp_path, capsys):
    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    assert cli(capsys, "sft", "--profile", "smoke", "--run-dir", rd, "--force")[0] == 0
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)
    assert code == 0
    for name in ("reward", "ppo"):  # the reward stage trains on SFT-written JDs (reward.generated_pairs)
        assert said(out, name)[0] == f"[girl] {name}: sft changed since it was trained; redoing"
    assert said(out, "evaluate")[0] == "[girl] evaluate: sft changed since it was run; redoing"
    for name in ("data", "sft", "genrec"):
        assert said(out, name)[-1].endswith("skipped (use --force to redo)"), name


def test_a_comparison_arm_trained_later_makes_evaluate_stale_and_girl_run_redoes_stale_arms(fake_stages, tmp_path,
                                                                                             capsys):
    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    assert cli(capsys, "ppo", "--algo", "grpo", "--profile", "smoke", "--run-dir", rd)[0] == 0
    assert pipeline.staleness("evaluate", resolve_profile("smoke"), Path(rd)) == "grpo was completed after it was run"
    assert cli(capsys, "sft", "--profile", "smoke", "--run-dir", rd, "--force")[0] == 0
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)
    assert code == 0 and said(out, "grpo")[0] == "[girl] grpo: sft changed since it was trained; redoing"
    assert said(out, "evaluate")[-1].startswith("[girl] evaluate: done")


@pytest.mark.parametrize("profile, seed, overrides", [
    ("smoke", 7, {}),  # another seed
    ("smoke", 3, {"data.n_seekers": "80"}),  # --set
    ("cpu", 3, {"data.n_seekers": "80", "data.n_jobs": "40"}),  # another profile (sized down)
])
def test_new_settings_on_a_complete_stage_redo_it(tmp_path, capsys, profile, seed, overrides):
    rd = str(tmp_path / "run")
    assert cli(capsys, "data", "--profile", "smoke", "--run-dir", rd, "--seed", "3")[0] == 0
    args = ["--profile", profile, "--seed", str(seed), *(f for k, v in overrides.items() for f in ("--set", f"{k}={v}"))]
    code, out, _ = cli(capsys, "data", "--run-dir", rd, *args)
    old = dataclasses.asdict(resolve_profile("smoke", seed=3).data)
    new = dataclasses.asdict(resolve_profile(profile, overrides, seed=seed).data)
    changed = [f"data.{k} {json.dumps(old[k])} -> {json.dumps(new[k])}" for k in sorted(new) if old[k] != new[k]]
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    assert code == 0 and said(out, "data")[0] == f"[girl] data: settings changed since it was built ({shown}); redoing"
    manifest = read_manifest(Path(rd) / "data")
    assert manifest["seed"] == seed and manifest["config"]["n_seekers"] == new["n_seekers"]
    assert json.loads(out[out.index("{"):])["counts"]["seekers"] == new["n_seekers"]
    code, out, _ = cli(capsys, "data", "--run-dir", rd, *args)
    assert code == 0 and said(out, "data")[0].endswith("skipped (use --force to redo)")


def test_a_setting_recorded_before_it_joined_no_effect_does_not_make_a_stage_stale(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    manifest_path = rd / "ppo" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert "ppo.snapshot_every" not in manifest["inputs"]["settings"]  # no-effect settings are not recorded
    manifest["inputs"]["settings"]["ppo.snapshot_every"] = 0  # ... but an older kit recorded this one
    manifest["inputs"]["settings_sha256"] = pipeline._sha256(manifest["inputs"]["settings"])  # as that kit did
    manifest_path.write_text(json.dumps(manifest))
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0 and said(out, "ppo")[-1].endswith("skipped (use --force to redo)")


def test_settings_that_change_no_output_do_not_make_a_stage_stale(fake_stages, tmp_path, capsys):
    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd, "--set", "generation.num_threads=1",
                       "--set", "ppo.save_every=7", "--set", "ppo.snapshot_every=3", "--set", "eval.judge_api_key_env=OTHER",
                       "--set", "device=cpu")
    assert code == 0 and all("skipped" in said(out, s)[-1] for s in ("data", *DOWNSTREAM_OF_DATA))
    # ... while one that does makes exactly the stages it shapes stale.
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd, "--set", "reward.max_length=200")
    was = resolve_profile("smoke").reward.max_length
    for name in ("reward", "ppo"):
        assert said(out, name)[0] == (f"[girl] {name}: settings changed since it was trained (reward.max_length {was} "
                                      "-> 200); redoing")
    assert said(out, "genrec")[-1].endswith("skipped (use --force to redo)")


def test_a_setting_added_later_at_none_keeps_a_stage_current_but_a_value_does_not(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    cfg = resolve_profile("smoke")
    manifest = read_manifest(rd / "genrec")
    # As if genrec had been made before the kit knew genrec.instructions_json (default None).
    recorded = {k: v for k, v in manifest["inputs"]["settings"].items() if k != "genrec.instructions_json"}
    manifest["inputs"].update(settings=recorded, settings_sha256=pipeline._sha256(recorded))
    (rd / "genrec" / "manifest.json").write_text(json.dumps(manifest))
    assert pipeline.staleness("genrec", cfg, rd) is None
    cfg.genrec.instructions_json = "records.json"
    assert "genrec.instructions_json" in pipeline.staleness("genrec", cfg, rd)
    # A boolean added later (sft.padding_free): current at its declared default, stale at another value.
    manifest = read_manifest(rd / "sft")
    recorded = {k: v for k, v in manifest["inputs"]["settings"].items() if k != "sft.padding_free"}
    manifest["inputs"].update(settings=recorded, settings_sha256=pipeline._sha256(recorded))
    (rd / "sft" / "manifest.json").write_text(json.dumps(manifest))
    cfg = resolve_profile("smoke")
    assert cfg.sft.padding_free is False and pipeline.staleness("sft", cfg, rd) is None
    cfg.sft.padding_free = True
    assert "sft.padding_free unset -> true" in pipeline.staleness("sft", cfg, rd)
    manifest["inputs"]["settings_sha256"] = "0" * 64  # a record that does not match its own digest
    (rd / "genrec" / "manifest.json").write_text(json.dumps(manifest))
    assert pipeline.staleness("genrec", resolve_profile("smoke"), rd) == "settings changed"


def test_one_table_names_settings_and_upstream_of_every_stage():
    names = [s.name for s in pipeline.STAGES]
    assert names == ["data", "sft", "reward", "ppo", "grpo", "rloo", "genrec", "evaluate"]
    cfg = resolve_profile("smoke")
    for s in pipeline.STAGES:
        assert set(s.upstream) <= set(names[:names.index(s.name)]), s.name  # upstream stages come first
        assert pipeline.stage_settings(s.name, cfg), s.name  # every listed setting exists
        for key in s.settings:
            assert any(k == key or k.startswith(key + ".") for k in pipeline.stage_settings(s.name, cfg)), key
    assert set(pipeline.STAGE_BY_NAME["ppo"].upstream) == {"data", "sft", "reward"}
    assert not any(k.startswith("device") for s in names for k in pipeline.stage_settings(s, cfg))


def test_manifest_without_inputs_record_is_redone(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    (rd / "sft").mkdir()
    write_manifest(rd / "sft", "sft", "smoke", 0.0, {})  # as an older kit wrote it
    # As an upstream stage it is used as it is (nothing to judge it by) ...
    assert cli(capsys, "reward", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    # ... and its own command (or `girl run`) redoes it, which makes the reward stage stale.
    code, out, _ = cli(capsys, "sft", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0 and said(out, "sft")[0] == (
        "[girl] sft: it was made by an older version of the kit, which did not record its inputs; redoing")
    assert pipeline.staleness("reward", resolve_profile("smoke"), rd) == "sft changed since it was trained"


# --------------------------------------------------------------------------------------------
# A failed --force (or a killed redo) keeps the previous complete output
# --------------------------------------------------------------------------------------------
def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_failed_force_with_a_bad_base_model_keeps_the_previous_sft(fake_stages, tmp_path, capsys, monkeypatch):
    from girl_lib.stages import sft

    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    before = _tree(Path(rd) / "sft")
    set_stage(monkeypatch, "sft", sft.run_stage)  # the real stage: it fails loading the model
    code, out, err = cli(capsys, "sft", "--profile", "smoke", "--run-dir", rd, "--force",
                         "--base-model", str(tmp_path / "no-such-model"))
    assert code == 2 and first_err(err).startswith("girl sft: error: ") and "does not exist" in first_err(err)
    assert said(out, "sft")[-1] == f"[girl] sft: the redo failed; the previous complete output is back in {Path(rd) / 'sft'}"
    assert _tree(Path(rd) / "sft") == before and not previous_dir(rd, "sft").exists()
    code, out, _ = cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)  # still current: nothing to redo
    assert code == 0 and all("skipped" in said(out, s)[-1] for s in ("data", *DOWNSTREAM_OF_DATA))


def test_failed_force_with_an_unreachable_judge_keeps_the_previous_evaluation(fake_stages, tmp_path, capsys,
                                                                            monkeypatch):
    rd = str(tmp_path / "run")
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", rd)[0] == 0
    before = _tree(Path(rd) / "eval")

    def judge_fails(cfg, run_dir):
        (stage_dir(run_dir, "evaluate") / "texts.json").write_text("half")
        raise GirlError(f"judge endpoint {cfg.eval.judge_url} failed: [Errno 111] Connection refused")

    set_stage(monkeypatch, "evaluate", judge_fails)
    code, _, err = cli(capsys, "evaluate", "--profile", "smoke", "--run-dir", rd, "--force",
                       "--judge-url", "http://127.0.0.1:9/v1")
    assert code == 2 and first_err(err) == ("girl evaluate: error: judge endpoint http://127.0.0.1:9/v1 failed: "
                                            "[Errno 111] Connection refused")
    assert _tree(Path(rd) / "eval") == before


def test_interrupted_redo_is_restored_on_a_later_run(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    before = _tree(rd / "reward")
    set_aside(rd, "reward")  # what a SIGKILL in the middle of `girl reward --force` leaves behind
    (rd / "reward").mkdir()
    (rd / "reward" / "half.bin").write_text("partial")
    code, out, _ = cli(capsys, "reward", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0 and said(out, "reward")[0] == (
        f"[girl] reward: an earlier redo did not finish; the previous complete output is back in {rd / 'reward'}")
    assert said(out, "reward")[1].endswith("skipped (use --force to redo)") and _tree(rd / "reward") == before


def test_unfinished_output_made_from_other_inputs_is_not_resumed(fake_stages, tmp_path, capsys):
    rd = tmp_path / "run"
    assert cli(capsys, "run", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    inputs = read_manifest(rd / "ppo")["inputs"]
    (rd / "ppo" / "manifest.json").unlink()  # killed midway (a run leaves what it started from) ...
    (rd / "ppo" / STARTED).write_text(json.dumps(inputs))
    (rd / "ppo" / "checkpoint").mkdir()
    assert cli(capsys, "sft", "--profile", "smoke", "--run-dir", str(rd), "--force")[0] == 0  # ... then sft redone
    assert cli(capsys, "reward", "--profile", "smoke", "--run-dir", str(rd))[0] == 0  # (it reads sft)
    code, out, _ = cli(capsys, "ppo", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0 and said(out, "ppo")[0] == (f"[girl] ppo: the unfinished output in {rd / 'ppo'} was made from "
                                                 "other inputs (sft changed since it was trained); starting over")
    assert not (rd / "ppo" / "checkpoint").exists()


# --------------------------------------------------------------------------------------------
# One writer per run dir
# --------------------------------------------------------------------------------------------
HOLD = ("import sys, time\nfrom girl_lib.rundir import lock_run_dir\n"
        "with lock_run_dir(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n")


def test_second_writer_gets_one_line_naming_the_holder(tmp_path, capsys):
    import socket

    rd = tmp_path / "run"
    rd.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(rd)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd))
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert first_err(err).startswith(f"girl data: error: run dir '{rd}' is in use by pid {holder.pid} on host "
                                         f"{socket.gethostname()}")
        assert first_err(err).endswith("one writer at a time; wait for it to finish, or pass another --run-dir")
        assert not (rd / "data").exists()
    finally:
        holder.kill()
        holder.wait()
    assert cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd))[0] == 0  # the kernel dropped its lock


def test_lock_left_by_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
    rd = tmp_path / "run"
    rd.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(rd)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup, the lock file still names it
    holder.wait()
    assert json.loads((rd / LOCK).read_text())["pid"] == holder.pid
    code, out, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd))
    assert code == 0
    assert said(out, f"run dir '{rd}'")[0].startswith(f"[girl] run dir '{rd}': taking over the lock of pid {holder.pid}")
    assert (rd / LOCK).read_text() == ""  # released cleanly


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    with lock_run_dir(tmp_path):
        with lock_run_dir(tmp_path):
            assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
        assert (tmp_path / LOCK).read_text() != ""
    assert (tmp_path / LOCK).read_text() == ""


@pytest.fixture(scope="module")
def world_hashes(tmp_path_factory):
    """sha256 of every file of the smoke world for seeds 3 and 4."""
    out = {}
    for seed in (3, 4):
        d = tmp_path_factory.mktemp(f"world{seed}")
        build_dataset(resolve_profile("smoke", seed=seed).data, d)
        out[seed] = {FILES[k]: hashlib.sha256((d / FILES[k]).read_bytes()).hexdigest() for k in KINDS}
    return out


def assert_one_world(data_dir: Path, world_hashes: dict) -> int:
    """The folder holds exactly one seed's world, and its manifest says which: returns the seed."""
    manifest = read_manifest(data_dir)
    seed = manifest["seed"]
    files = {FILES[k]: hashlib.sha256((data_dir / FILES[k]).read_bytes()).hexdigest() for k in KINDS}
    assert files == world_hashes[seed] == manifest["sha256"]
    return seed


def _writer(args, barrier, log):
    sys.stdout = sys.stderr = open(log, "w", buffering=1)  # a forked child: pytest's capture is the parent's
    barrier.wait()
    code = main(args)
    sys.stdout.flush()
    os._exit(code)


def test_two_concurrent_writers_one_wins_the_other_exits_2(tmp_path, world_hashes, monkeypatch):
    from girl_lib.stages import data

    def slow_data(cfg, run_dir):  # the race window of a real build, made wide enough to hit every time
        time.sleep(0.3)
        return data.run_stage(cfg, run_dir)

    set_stage(monkeypatch, "data", slow_data)
    ctx = multiprocessing.get_context("fork")
    for attempt in range(12):
        rd = tmp_path / f"run{attempt}"
        barrier = ctx.Barrier(2)
        procs = {}
        for seed in (3, 4):
            log = tmp_path / f"log{attempt}-{seed}"
            p = ctx.Process(target=_writer, args=(["data", "--profile", "smoke", "--run-dir", str(rd), "--seed",
                                                   str(seed)], barrier, str(log)))
            p.start()
            procs[seed] = (p, log)
        for p, _ in procs.values():
            p.join(60)
        codes = {seed: p.exitcode for seed, (p, _) in procs.items()}
        assert sorted(codes.values()) == [0, 2], (attempt, codes, [log.read_text() for _, log in procs.values()])
        winner = next(s for s, c in codes.items() if c == 0)
        loser_err = [line for line in procs[7 - winner][1].read_text().splitlines() if line.startswith("girl ")]
        assert loser_err[0].startswith(f"girl data: error: run dir '{rd}' is in use by pid "), loser_err
        assert assert_one_world(rd / "data", world_hashes) == winner


def test_two_real_girl_data_processes_never_leave_a_mixed_folder(tmp_path, world_hashes):
    """The same race with two real `girl data` processes, timing left to the machine."""
    rd = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "girl_lib.cli", "data", "--profile", "smoke", "--run-dir",
                               str(rd), "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for seed in (3, 4)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    codes = sorted(code for _, code in results)
    assert codes in ([0, 0], [0, 2]), results  # [0, 0]: they ran one after the other
    for (_, err), code in results:
        if code == 2:
            assert err.splitlines()[0].startswith(f"girl data: error: run dir '{rd}' is in use by pid ")
    assert assert_one_world(rd / "data", world_hashes) in (3, 4)


# --------------------------------------------------------------------------------------------
# Every error path: one line; exit 2 for what the user or the machine caused, 1 for a bug
# --------------------------------------------------------------------------------------------
def test_reversed_range_setting_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(tmp_path),
                       "--set", "data.applications_per_seeker=6,3")
    lo, hi = resolve_profile("smoke").data.applications_per_seeker
    assert code == 2 and err.strip() == (
        "girl data: error: setting 'data.applications_per_seeker' is 6,3; it must be a range lo,hi of two integers "
        f"with 1 <= lo <= hi (the smoke profile has {lo},{hi}: --set data.applications_per_seeker={lo},{hi})")


def test_full_disk_is_one_line_exit_2_and_keeps_the_previous_output(tmp_path, capsys, monkeypatch):
    import girl_lib.world.io as world_io

    rd = tmp_path / "run"
    assert cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd))[0] == 0
    before = _tree(rd / "data")

    def no_space(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(world_io, "atomic_write_text", no_space)
    code, _, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(rd), "--force")
    assert code == 2 and err.strip() == (f"girl data: error: No space left on device: '{rd / 'data' / 'seekers.jsonl'}'; "
                                         "free some space, or pass --run-dir on another disk")
    assert _tree(rd / "data") == before


def test_atomic_write_names_the_file_when_the_disk_is_full(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "x.json", "{}")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []  # no temp file left


def test_stage_folder_that_is_a_file_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "data").write_text("not a folder")
    code, _, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(tmp_path))
    assert code == 2 and err.strip() == (f"girl data: error: '{tmp_path / 'data'}' is a file, but the data stage "
                                         "writes a folder there; move or delete the file")


def test_deeply_nested_json_line_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "j1", "jd_text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    code, _, err = cli(capsys, "data", "validate", str(path))
    assert code == 2 and err.strip() == (f"girl data: error: {path}:1: is nested too deeply to be a record (JSON "
                                         "arrays/objects inside each other thousands of levels deep)")


def test_a_bug_is_one_line_naming_a_log_with_the_traceback_exit_1(fake_stages, tmp_path, capsys, monkeypatch):
    def buggy(cfg, run_dir):
        raise KeyError("n_seekerz")

    set_stage(monkeypatch, "data", buggy)
    code, _, err = cli(capsys, "data", "--profile", "smoke", "--run-dir", str(tmp_path))
    assert code == 1 and len(err.strip().splitlines()) == 1
    line = err.strip()
    assert line.startswith("girl data: internal error: KeyError: 'n_seekerz' (the traceback is in ")
    log = Path(line.split("the traceback is in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "buggy" in log.read_text()
    log.unlink()


# --------------------------------------------------------------------------------------------
# The real thing: a changed data seed makes the real SFT stage stale (smoke profile)
# --------------------------------------------------------------------------------------------
def test_changed_data_seed_makes_the_real_sft_stale(smoke_cfg, smoke_run, tmp_path):
    quiet = lambda *a: None  # noqa: E731
    pipeline.run_stage("sft", smoke_cfg, smoke_run, log=quiet)  # the session's SFT (skipped when done)
    shared = manifest_digest(smoke_run / "sft")
    rd = tmp_path / "run"
    rd.mkdir()
    shutil.copytree(smoke_run / "data", rd / "data")  # a copy: same manifest, same digest
    link_stages(smoke_run, rd, ("sft",))
    assert pipeline.staleness("sft", smoke_cfg, rd) is None
    cfg = apply_overrides(smoke_cfg, {"data.seed": smoke_cfg.data.seed + 1})
    lines = []
    pipeline.run_stage("data", cfg, rd, log=lines.append)
    assert lines[0] == f"[girl] data: settings changed since it was built (data.seed {smoke_cfg.data.seed} -> {cfg.data.seed}); redoing"
    assert pipeline.staleness("sft", cfg, rd) == "data changed since it was trained"
    lines.clear()
    manifest = pipeline.run_stage("sft", cfg, rd, log=lines.append)
    assert lines[0] == "[girl] sft: data changed since it was trained; redoing"
    assert manifest["inputs"]["upstream"]["data"] == manifest_digest(rd / "data")
    assert not (rd / "sft").is_symlink() and (rd / "sft" / "adapter" / "adapter_config.json").is_file()
    assert manifest_digest(smoke_run / "sft") == shared  # the linked original is untouched
    assert pipeline.staleness("sft", cfg, rd) is None
