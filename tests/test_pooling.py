"""The reward model's pooling (girl_lib.pooling) on the tiny smoke LLaMA and the real SmolLM2 tokenizer."""
import pytest
import torch

from girl_lib import scoring
from girl_lib.stages import reward
from girl_lib.config import apply_overrides
from girl_lib.errors import GirlError
from girl_lib.pooling import response_header_ids, response_mask, truncate_layers
from girl_lib.world import make_prompt
from conftest import fp_tol, head_scale


def score_tol(model) -> float:
    """Two float32 computations of one reward score: a few ulps of the terms of its d-term dot
    products (bounded by :func:`head_scale`, even where the score cancels to ~0), d times."""
    return fp_tol(torch.float32, head_scale(model), n_terms=model.config.hidden_size)


def test_header_is_the_chat_templates_assistant_turn(smoke_cfg):
    from girl_lib.models import load_tokenizer

    tok = load_tokenizer(smoke_cfg.model)
    header = response_header_ids(tok)
    assert tok.decode(header) == "<|im_start|>assistant\n"
    ids = scoring.chat_ids(tok, make_prompt("Ann — Vienna"), "Data Analyst @ X")
    # The header occurs exactly once in a scored chat: before the JD.
    starts = [i for i in range(len(ids)) if ids[i:i + len(header)] == header]
    assert len(starts) == 1 and tok.decode(ids[starts[0] + len(header):]).startswith("Data Analyst")


def test_response_mask_by_hand():
    h = [7, 8]
    ids = torch.tensor([[1, 7, 8, 5, 6, 0, 0],     # response 5 6, then padding
                        [7, 8, 3, 7, 8, 4, 9],     # the LAST header counts: response 4 9
                        [1, 2, 7, 8, 5, 0, 0]])
    attn = (ids != 0).long()
    mask = response_mask(ids, attn, h)
    assert mask.tolist() == [[False, False, False, True, True, False, False],
                             [False, False, False, False, False, True, True],
                             [False, False, False, False, True, False, False]]
    with pytest.raises(ValueError, match=r"rows \[0\] have no assistant header"):
        response_mask(torch.tensor([[1, 2, 3]]), None, h)
    with pytest.raises(ValueError, match="empty response"):
        response_mask(torch.tensor([[1, 7, 8, 0]]), torch.tensor([[1, 1, 1, 0]]), h)


def test_response_mean_score_equals_the_hand_computed_mean(smoke_cfg):
    cfg = apply_overrides(smoke_cfg, {"reward.pooling": "response_mean"})
    model, tok = scoring.load_base(cfg)
    prompt, jd = make_prompt("Ann — Vienna\nSkills: SQL; Python"), "Data Analyst @ X · Vienna · mid"
    ids = torch.tensor([scoring.chat_ids(tok, prompt, jd)])
    header = response_header_ids(tok)
    start = next(i for i in range(ids.shape[1]) if ids[0, i:i + len(header)].tolist() == header) + len(header)
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state
        hand = model.score(hidden[0, start:]).mean()
        last_token = model.score(hidden[0, -1])
        got = scoring.score_prompts(model, tok, [prompt], [jd])[0]
    # Same function, other kernels (padding mask, batched pooling): equal up to rounding. Reading
    # the last token instead (the bug below) moves this score by ~0.36, thousands of times tol.
    tol = score_tol(model)
    assert abs(got.item() - hand.item()) <= tol
    assert abs(got.item() - last_token.item()) > tol  # really not the last-token head
    with pytest.raises(ValueError, match="scores only"):  # no silently ignored labels
        model(input_ids=ids, labels=torch.tensor([1.0]))
    # The CV's tokens are outside the pool, but the JD tokens attended to them: another CV, another score.
    other = scoring.score_prompts(model, tok, [make_prompt("Bob — Oslo\nSkills: welding")], [jd])[0]
    assert abs(other.item() - got.item()) > tol  # more than rounding: the CV really moved it


@pytest.mark.parametrize("pooling", ["last", "response_mean"])
def test_both_poolings_train_through_trl_and_ignore_batch_mates(smoke_cfg, smoke_run, tmp_path, pooling):
    cfg = apply_overrides(smoke_cfg, {"reward.pooling": pooling, "reward.max_steps": 2})
    train_ds, _ = reward.reward_datasets(smoke_run / "data", cfg)
    model, tok = scoring.load_base(cfg)
    trainer = reward.make_trainer(cfg, model, tok, train_ds.select(range(4)), None, tmp_path / "t")
    trainer.train()
    rows = reward.load_pairs(smoke_run / "data", "val")[:4]
    prompts, jds = [r["prompt"] for r in rows], [r["chosen"] for r in rows]
    batched = scoring.score_prompts(trainer.model, tok, prompts, jds, batch_size=4)
    alone = torch.cat([scoring.score_prompts(trainer.model, tok, [p], [j], batch_size=1) for p, j in zip(prompts, jds)])
    # Right padding leaves a row's real tokens where they are alone: equal up to rounding (other
    # matmul shapes). Padding that leaked in moves a padded row's score by ~0.1, 1000x this tol.
    torch.testing.assert_close(batched, alone, atol=score_tol(trainer.model), rtol=0)


def test_truncated_backbone_keeps_the_first_layers(smoke_cfg):
    full, tok = scoring.load_base(smoke_cfg)
    n = len(full.model.layers)
    assert n >= 2
    cut, _ = scoring.load_base(apply_overrides(smoke_cfg, {"reward.num_layers": 1}))
    assert len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1
    assert torch.equal(cut.model.layers[0].mlp.up_proj.weight, full.model.layers[0].mlp.up_proj.weight)
    ids = torch.tensor([scoring.chat_ids(tok, make_prompt("Ann"), "Tester")])
    with torch.no_grad():
        # The truncated model's hidden state is the full model's after its first layer (then the final
        # norm): the very same operations on the same weights, so the same floats on any machine.
        h1 = full.model(ids, output_hidden_states=True).hidden_states[1]
        assert torch.equal(cut.model(ids).last_hidden_state, full.model.norm(h1))
    truncate_layers(cut, 0)  # 0 = keep all (here: the one left)
    assert len(cut.model.layers) == 1


def test_unknown_pooling_and_a_mismatched_reload_are_refused(smoke_cfg, smoke_run, tmp_path):
    import json
    import shutil

    with pytest.raises(GirlError, match="unknown reward.pooling"):
        scoring.load_base(apply_overrides(smoke_cfg, {"reward.pooling": "max"}))
    # A reward adapter trained with one pooling is not reloaded under another.
    cfg = apply_overrides(smoke_cfg, {"reward.pooling": "last"})
    model, _ = scoring.load_base(cfg)
    from peft import get_peft_model

    out = tmp_path / "reward"
    get_peft_model(model, reward.peft_reward_config(cfg)).save_pretrained(out / "adapter")
    (out / "metrics.json").write_text(json.dumps({"base_model": cfg.model.base_model, "pooling": "last",
                                                  "num_layers": 0}))
    shutil.copytree(smoke_run / "data", tmp_path / "data")
    scoring.load_reward_model(cfg, tmp_path)  # same settings: loads
    with pytest.raises(GirlError, match="pooling=last, not response_mean"):
        scoring.load_reward_model(apply_overrides(cfg, {"reward.pooling": "response_mean"}), tmp_path)
    with pytest.raises(GirlError, match="num_layers=0, not 1"):
        scoring.load_reward_model(apply_overrides(cfg, {"reward.num_layers": 1}), tmp_path)
    # metrics.json from before these settings existed: the stock head on the full model.
    (out / "metrics.json").write_text(json.dumps({"base_model": cfg.model.base_model}))
    scoring.load_reward_model(cfg, tmp_path)
    with pytest.raises(GirlError, match="--force"):
        scoring.load_reward_model(apply_overrides(cfg, {"reward.pooling": "response_mean"}), tmp_path)


def test_token_scores_average_to_the_score_and_the_report_draws(smoke_cfg, smoke_run):
    from girl_lib.pooling import token_scores

    cfg = apply_overrides(smoke_cfg, {"reward.pooling": "response_mean"})
    model, tok = scoring.load_base(cfg)
    row = reward.load_pairs(smoke_run / "data", "val")[0]
    toks = token_scores(model, tok, scoring.chat_ids(tok, row["prompt"], row["chosen"]))
    assert "".join(t for t, _ in toks).startswith(row["chosen"][:20])  # the JD's tokens, in order
    mean = sum(s for _, s in toks) / len(toks)
    # Same scores, pooled in float64 here and in float32 there: the pooling's n terms add n ulps.
    tol = score_tol(model) + fp_tol(torch.float32, max(abs(s) for _, s in toks), n_terms=len(toks))
    assert abs(mean - scoring.score_prompts(model, tok, [row["prompt"]], [row["chosen"]])[0].item()) <= tol
    cv = row["prompt"].split("Candidate CV:\n", 1)[1]
    fig = reward.token_report(model, tok, cv, [row["chosen"], row["rejected"]], ["chosen", "rejected"])
    assert len(fig.axes) == 2
    last, _ = scoring.load_base(apply_overrides(smoke_cfg, {"reward.pooling": "last"}))
    with pytest.raises(GirlError, match="response_mean"):
        token_scores(last, tok, scoring.chat_ids(tok, row["prompt"], row["chosen"]))
