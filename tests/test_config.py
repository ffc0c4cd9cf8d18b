import pytest

from girl_lib.config import (EMBEDDED_MODEL, TINY_MODEL, apply_overrides, parse_override_args,
                             resolve_name, resolve_profile)
from girl_lib.errors import GirlError


def test_named_profiles_differ_where_they_should():
    smoke, cpu, gpu = (resolve_profile(n, check_device=False) for n in ("smoke", "cpu", "gpu"))
    assert smoke.model.base_model == TINY_MODEL
    assert cpu.model.base_model == EMBEDDED_MODEL and gpu.model.base_model == EMBEDDED_MODEL
    assert smoke.data.n_seekers < cpu.data.n_seekers < gpu.data.n_seekers
    assert 1000 <= cpu.data.n_seekers <= 2000 and gpu.data.n_seekers >= 20000
    assert gpu.device == "cuda" and cpu.device == "cpu"


def test_auto_follows_cuda(monkeypatch):
    import girl_lib.config as config

    monkeypatch.setattr(config, "cuda_available", lambda: True)
    assert resolve_name("auto") == "gpu"
    monkeypatch.setattr(config, "cuda_available", lambda: False)
    assert resolve_name("auto") == "cpu"
    assert resolve_profile("auto").name == "cpu"


def test_unknown_profile_is_a_one_line_error():
    with pytest.raises(GirlError, match="unknown profile 'laptop'.*smoke, cpu, cpu-full, gpu, auto"):
        resolve_profile("laptop")


def test_overrides_are_typed_and_do_not_leak():
    cfg = resolve_profile("smoke", {"sft.max_steps": "7", "sft.lora.r": 2, "ppo.adaptive_kl_target": "6",
                                    "sft.lora.target_modules": "q_proj,v_proj", "model.trust_remote_code": "false"})
    assert cfg.sft.max_steps == 7 and isinstance(cfg.sft.max_steps, int)
    assert cfg.sft.lora.r == 2
    assert cfg.ppo.adaptive_kl_target == 6.0
    assert cfg.sft.lora.target_modules == ("q_proj", "v_proj")
    assert cfg.reward.lora.r == resolve_profile("smoke").reward.lora.r  # untouched sibling
    assert resolve_profile("smoke").sft.max_steps != 7  # the named profile itself is unchanged


@pytest.mark.parametrize("key,value,msg", [
    ("sft.nope", 1, "unknown setting 'sft.nope'"),
    ("sft", 1, "is a section"),
    ("sft.max_steps", "many", "expected int"),
    ("model.trust_remote_code", "maybe", "expected true/false"),
])
def test_bad_overrides(key, value, msg):
    with pytest.raises(GirlError, match=msg):
        apply_overrides(resolve_profile("smoke"), {key: value})


def test_parse_override_args():
    assert parse_override_args(["a.b=1", "c= x=y "]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(GirlError, match="KEY=VALUE"):
        parse_override_args(["novalue"])


# ---------------------------------------------------------------------------------------------
# Range checks (validate_profile)
# ---------------------------------------------------------------------------------------------
def test_every_named_profile_passes_its_own_range_checks():
    from girl_lib.config import validate_profile

    for name in ("smoke", "cpu", "gpu"):
        validate_profile(resolve_profile(name, check_device=False))


@pytest.mark.parametrize("key, value, message", [
    ("data.recruiter_noise", 5, "setting 'data.recruiter_noise' is 5.0; it must be a probability in [0, 1] "
                                "(the smoke profile has "),
    ("data.recruiter_noise", -1, "setting 'data.recruiter_noise' is -1.0; it must be a probability in [0, 1]"),
    ("data.recruiter_noise", "nan", "setting 'data.recruiter_noise' is nan; it must be a finite number"),
    ("data.val_fraction", -0.5, "setting 'data.val_fraction' is -0.5; it must be a fraction in [0, 1)"),
    ("data.applications_per_seeker", "6,3", "setting 'data.applications_per_seeker' is 6,3; it must be a range "
                                            "lo,hi of two integers with 1 <= lo <= hi"),
    ("data.applications_per_seeker", "0,3", "setting 'data.applications_per_seeker' is 0,3"),
    ("data.applications_per_seeker", "3", "setting 'data.applications_per_seeker' is 3"),
    ("data.n_seekers", 0, "setting 'data.n_seekers' is 0; it must be an integer >= 1"),
    ("sft.learning_rate", "inf", "setting 'sft.learning_rate' is inf; it must be a finite number"),
    ("sft.learning_rate", 0, "setting 'sft.learning_rate' is 0.0; it must be a number > 0"),
    ("reward.lora.dropout", 1, "setting 'reward.lora.dropout' is 1.0; it must be a probability in [0, 1)"),
    ("ppo.gamma", 1.5, "setting 'ppo.gamma' is 1.5; it must be a discount in [0, 1]"),
    ("ppo.rollout_batch_size", 0, "setting 'ppo.rollout_batch_size' is 0; it must be an integer >= 1"),
    ("ppo.format_penalty", -1, "setting 'ppo.format_penalty' is -1.0; it must be a number >= 0 (0: off)"),
    ("generation.temperature", 0, "setting 'generation.temperature' is 0.0; it must be a number > 0"),
    ("eval.top_k", -3, "setting 'eval.top_k' is -3; it must be an integer >= 1"),
    ("model.dtype", "float8", "setting 'model.dtype' is float8; it must be one of auto, float32, bfloat16, float16"),
    ("device", "tpu", "setting 'device' is tpu; it must be one of cpu, cuda, mps"),
])
def test_out_of_range_settings_are_one_line_errors_naming_the_setting(key, value, message):
    with pytest.raises(GirlError) as err:
        resolve_profile("smoke", {key: value})
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text, text


def test_split_fractions_must_leave_seekers_for_training():
    with pytest.raises(GirlError) as err:
        resolve_profile("smoke", {"data.val_fraction": 0.5, "data.test_fraction": 0.4})
    text = str(err.value)
    assert text.startswith("settings data.val_fraction, data.test_fraction") and "must sum to less than 1" in text
    assert resolve_profile("smoke", {"data.val_fraction": 0.3, "data.test_fraction": 0.3}).data.val_fraction == 0.3


def test_run_stage_checks_settings_made_with_apply_overrides(tmp_path):
    from girl_lib.pipeline import run_stage

    cfg = apply_overrides(resolve_profile("smoke"), {"data.recruiter_noise": "nan"})  # no check here ...
    with pytest.raises(GirlError, match="setting 'data.recruiter_noise' is nan"):  # ... but here
        run_stage("data", cfg, tmp_path, log=lambda *a: None)
    assert not (tmp_path / "data").exists()
