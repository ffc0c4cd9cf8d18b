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

A stage whose output is complete is skipped only while it is current: made with the same
settings from the same upstream output; otherwise it is redone, with a line saying why. One
command writes to a run dir at a time. Any error a user (or the machine: a full disk, a file
where a folder should be) can cause prints one line and exits 2; anything else is a bug: one line
naming a log file with the traceback, exit 1.
"""
from __future__ import annotations

import argparse
import codecs
import errno
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .config import parse_override_args, resolve_profile
from .doctor import format_report, run_doctor
from .errors import EXIT_BUG, EXIT_USAGE, GirlError
from .pipeline import run_all, run_stage, writer_lock
from .report import write_report
from .rundir import default_run_dir, ensure_writable
from .stages.evaluate.recommend import format_recommendation, recommend
from .world.io import MAX_TEXT_CHARS, check_path


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (usage and message) and exit 2, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
    parser = _Parser(prog="girl", description=__doc__.split("\n\n")[0],
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
    with writer_lock(run_dir):
        run_all(cfg, run_dir, force=args.force)
        report = write_report(run_dir, cfg.name)
    print(f"[girl] report: {report.resolve()}")
    return 0


def cmd_data(args) -> int:
    if args.action == "validate":
        if not args.path:
            raise GirlError("usage: girl data validate PATH (a .jsonl file or a data folder)")
        checked = check_path(Path(args.path))
        out = {"valid": True, "path": args.path, "counts": checked["counts"]}
        if checked["not_checked"]:
            out["not_checked"] = checked["not_checked"]
            print(f"girl data validate: note: a single file; not checked: {checked['not_checked'][0]}", file=sys.stderr)
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if args.path:
        raise GirlError(f"unexpected argument '{args.path}'; did you mean 'girl data validate {args.path}'?")
    return cmd_stage(args)


def cmd_stage(args) -> int:
    cfg = _profile(args)
    # `girl ppo --algo grpo|rloo`: TRL's GRPO/RLOO as comparison arms, into <run-dir>/<algo>/
    name = args.algo if getattr(args, "algo", "ppo") != "ppo" else args.command
    run_dir = _run_dir(args, cfg)
    with writer_lock(run_dir):
        manifest = run_stage(name, cfg, run_dir, force=args.force)
        print(json.dumps(manifest.get("result", {}), indent=2, sort_keys=True, default=str))
        if args.command == "evaluate":
            print(f"[girl] report: {write_report(run_dir, cfg.name).resolve()}")
    return 0


def cmd_evaluate(args) -> int:
    if args.judge_url:
        args.overrides = [*args.overrides, f"eval.judge_url={args.judge_url}"]
    return cmd_stage(args)


def read_cv(path: Path | str) -> str:
    """The CV of ``girl recommend``: UTF-8 text, at most MAX_TEXT_CHARS characters (the rest cut, with a notice).

    Reads only what it keeps, so a huge file costs no time.
    """
    cv = Path(path)
    if not cv.exists():
        raise GirlError(f"CV file '{cv}' does not exist")
    if not cv.is_file():
        raise GirlError(f"CV file '{cv}' is not a regular file; pass a plain-text file")
    size = cv.stat().st_size
    with open(cv, "rb") as f:
        data = f.read(MAX_TEXT_CHARS * 4 + 4)  # UTF-8: at most 4 bytes a character
    whole = len(data) >= size
    try:  # a cut multi-byte character at the end of a partial read is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
    except UnicodeDecodeError:
        raise GirlError(f"CV file '{cv}' is not UTF-8 plain text") from None
    if not text.strip():
        raise GirlError(f"CV file '{cv}' is empty")
    if len(text) > MAX_TEXT_CHARS or not whole:
        text = text[:MAX_TEXT_CHARS]
        print(f"girl recommend: note: CV file '{cv}' is {size:,} bytes; only its first {MAX_TEXT_CHARS:,} characters "
              "are used (the kit's limit for any text; a CV is usually under 2,000)", file=sys.stderr)
    return text


def cmd_recommend(args) -> int:
    cv_text = read_cv(args.cv)
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
        return _fail(args.command, f"error: {exc}", EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"girl {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno in _MACHINE_ERRORS:
            return _fail(args.command, f"error: {_os_error(exc)}", EXIT_USAGE)
        return _bug(args.command, exc)
    except MemoryError:
        return _fail(args.command, "error: out of memory; use a smaller profile or smaller sizes (--set ...)", EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into one line and a log
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA/MPS)
            return _fail(args.command, "error: the accelerator ran out of memory; lower the batch sizes "
                                       "(--set ...batch_size=...) or use a smaller profile", EXIT_USAGE)
        return _bug(args.command, exc)


# What the machine refuses, with the fix: one line and exit 2, like a user error.
_FIX = {
    errno.ENOSPC: "free some space, or pass --run-dir on another disk",
    errno.EDQUOT: "free some space, or pass --run-dir on another disk",
    errno.EACCES: "pass --run-dir to a folder you can write to",
    errno.EPERM: "pass --run-dir to a folder you can write to",
    errno.EROFS: "pass --run-dir to a folder you can write to",
    errno.EEXIST: "a file stands where the kit writes a folder; move it away",
    errno.ENOTDIR: "a file stands where the kit expects a folder; move it away",
    errno.EISDIR: "a folder stands where the kit writes a file; move it away",
    errno.ENOENT: "check that the path exists",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.ENFILE: "too many open files on this machine; close some programs",
    errno.ECONNREFUSED: "check the URL, and that the server is running",
    errno.EHOSTUNREACH: "check the URL and the network",
    errno.ENETUNREACH: "check the URL and the network",
    errno.ETIMEDOUT: "check the URL and the network",
}
_MACHINE_ERRORS = frozenset(_FIX)


def _os_error(exc: OSError) -> str:
    where = f": '{exc.filename}'" if exc.filename else ""
    return f"{exc.strerror or exc}{where}; {_FIX[exc.errno]}"


def _fail(command: str, text: str, code: int) -> int:
    one_line = " ".join(str(text).split())
    print(f"girl {command}: {one_line}", file=sys.stderr)
    return code


def _bug(command: str, exc: BaseException) -> int:
    """An unexpected exception: one line, the traceback in a log file, exit 1."""
    name = f"girl-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log = Path(tempfile.gettempdir()) / name
    try:
        log.write_text(f"girl {' '.join(sys.argv[1:])}\n" + "".join(traceback.format_exception(exc)), encoding="utf-8")
        where = f"the traceback is in {log}"
    except OSError:
        where = "the traceback could not be saved"
    message = " ".join(str(exc).split())[:300]
    return _fail(command, f"internal error: {type(exc).__name__}: {message} ({where}; this is a bug in the kit, "
                          "please report it with that file)", EXIT_BUG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
