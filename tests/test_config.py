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
    with pytest.raises(GirlError, match="unknown profile 'laptop'.*smoke, cpu, gpu, auto"):
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
