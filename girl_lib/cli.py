"""The ``girl`` command line.

    girl doctor [--json]               environment check for bug reports
    girl run     [--profile P]         every built stage in order, skipping complete ones
    girl data    [--profile P]         the synthetic recruiting world -> <run-dir>/data/
    girl data validate PATH            check a data file or folder (file, line, field on error)
    girl sft | reward | ppo | genrec | evaluate [--profile P]
    girl recommend --cv FILE           a JD written for a CV, plus the closest real postings
    girl evaluate [--judge-url URL]    every arm side by side -> <run-dir>/eval/, report.md

Common options: ``--profile smoke|cpu|gpu|auto``, ``--run-dir`` (default ``runs/<profile>``),
``--set KEY=VALUE`` (any profile field, repeatable), ``--base-model``, ``--seed``, ``--force``.
Any error a user can cause prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import parse_override_args, resolve_profile
from .doctor import format_report, run_doctor
from .errors import EXIT_USAGE, GirlError
from .pipeline import run_all, run_stage
from .report import write_report
from .rundir import default_run_dir, ensure_writable
from .stages.evaluate.recommend import format_recommendation, recommend
from .world import validate_path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="auto", help="smoke | cpu | gpu | auto (default: auto)")
    p.add_argument("--run-dir", default=None, help="output folder (default: runs/<profile>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile field, e.g. --set sft.max_steps=10 (repeatable)")
    p.add_argument("--base-model", default=None,
                   help="embedded (default), a Hugging Face model id, or a local model directory")
    p.add_argument("--seed", type=int, default=None, help="global seed (default: the profile's)")
    p.add_argument("--force", action="store_true", help="redo stages whose output is complete")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="girl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doc = sub.add_parser("doctor", help="report Python, packages, device and whether the base model loads")
    _common(doc)
    doc.add_argument("--json", action="store_true", help="print JSON")
    doc.add_argument("--no-model", action="store_true", help="skip loading the base model")

    run = sub.add_parser("run", help="run every built stage in order (skips complete ones)")
    _common(run)

    data = sub.add_parser("data", help="build the synthetic world, or 'data validate PATH'")
    _common(data)
    data.add_argument("action", nargs="?", choices=("build", "validate"), default="build")
    data.add_argument("path", nargs="?", help="with 'validate': a data file or folder")

    for name, text in (("sft", "stage 1: supervised fine-tuning of the JD generator"),
                       ("reward", "stage 2: reward model from recruiter feedback"),
                       ("ppo", "stage 3: PPO against the reward model"),
                       ("genrec", "GenRec: generative next-job recommendation"),
                       ("evaluate", "evaluation of every trained generator")):
        sp = sub.add_parser(name, help=text)
        _common(sp)
        if name == "ppo":
            sp.add_argument("--algo", default="ppo", choices=("ppo", "grpo", "rloo"))
        if name == "evaluate":
            sp.add_argument("--judge-url", default=None, metavar="URL",
                            help="an OpenAI-compatible endpoint (http://host/v1) as the pairwise judge instead "
                                 "of the rubric; the API key is read from $GIRL_JUDGE_API_KEY")

    rec = sub.add_parser("recommend", help="a JD written for a CV plus the closest real postings")
    _common(rec)
    rec.add_argument("--cv", required=True, help="a CV as a plain-text file")
    rec.add_argument("--top-k", type=int, default=5, help="how many real postings to show (default 5)")
    rec.add_argument("--arm", default=None, choices=("zero_shot", "sft", "ppo", "grpo", "rloo"),
                     help="which generator (default: the best trained one: ppo > grpo > rloo > sft)")
    rec.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _profile(args):
    return resolve_profile(args.profile, parse_override_args(args.overrides), base_model=args.base_model,
                           seed=args.seed)


def _run_dir(args, cfg) -> Path:
    return Path(args.run_dir) if args.run_dir else default_run_dir(cfg.name)


def cmd_doctor(args) -> int:
    cfg = _profile(args)
    report = run_doctor(cfg.model, load_model=not args.no_model)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if not report["ok"]:
        print(f"girl doctor: {report['problems'][0]}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_run(args) -> int:
    cfg = _profile(args)
    run_dir = ensure_writable(_run_dir(args, cfg))
    run_all(cfg, run_dir, force=args.force)
    report = write_report(run_dir, cfg.name)
    print(f"[girl] report: {report.resolve()}")
    return 0


def cmd_data(args) -> int:
    if args.action == "validate":
        if not args.path:
            raise GirlError("usage: girl data validate PATH (a .jsonl file or a data folder)")

        counts = validate_path(Path(args.path))
        print(json.dumps({"valid": True, "path": args.path, "counts": counts}, indent=2, sort_keys=True))
        return 0
    return cmd_stage(args)


def cmd_stage(args) -> int:
    cfg = _profile(args)
    # `girl ppo --algo grpo|rloo`: TRL's GRPO/RLOO as comparison arms, into <run-dir>/<algo>/
    name = args.algo if getattr(args, "algo", "ppo") != "ppo" else args.command
    manifest = run_stage(name, cfg, _run_dir(args, cfg), force=args.force)
    print(json.dumps(manifest.get("result", {}), indent=2, sort_keys=True, default=str))
    if args.command == "evaluate":
        print(f"[girl] report: {write_report(_run_dir(args, cfg), cfg.name).resolve()}")
    return 0


def cmd_evaluate(args) -> int:
    if args.judge_url:
        args.overrides = [*args.overrides, f"eval.judge_url={args.judge_url}"]
    return cmd_stage(args)


def cmd_recommend(args) -> int:
    cv = Path(args.cv)
    if not cv.is_file():
        raise GirlError(f"CV file '{cv}' does not exist")
    try:
        cv_text = cv.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GirlError(f"CV file '{cv}' is not UTF-8 plain text") from None
    if not cv_text.strip():
        raise GirlError(f"CV file '{cv}' is empty")
    cfg = _profile(args)
    rec = recommend(cfg, _run_dir(args, cfg), cv_text, top_k=args.top_k, arm=args.arm)
    print(json.dumps(rec, indent=2, ensure_ascii=False) if args.json else format_recommendation(rec))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    handlers = {"doctor": cmd_doctor, "run": cmd_run, "data": cmd_data, "recommend": cmd_recommend,
                "evaluate": cmd_evaluate}
    try:
        return handlers.get(args.command, cmd_stage)(args)
    except GirlError as exc:
        print(f"girl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"girl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
