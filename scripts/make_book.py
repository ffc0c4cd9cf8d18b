"""Executed copies of the chapters: docs/chapters/NN_name.ipynb, stamped and checked.

    python scripts/make_book.py --profile cpu --run-dir runs/cpu            # every chapter
    python scripts/make_book.py --profile cpu --run-dir runs/cpu 04_ppo     # one chapter
    python scripts/make_book.py --check                                     # are the copies up to date?

``make book`` calls it (PROFILE defaults to cpu there; RUN_DIR names a run directory to reuse).
Each chapter runs with papermill from notebooks/; every stage already complete in the run
directory is skipped, so with a finished ``girl run`` the book costs only what the chapters do
beyond the stages (a few training steps in the open, one PPO iteration by hand, the β sweep).
The logic lives in girl_lib/book.py: stamping (commit, date, profile, a hash of the source
cells), shrinking outputs, and the check that tests/test_book.py runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from girl_lib import book  # noqa: E402


def chapters(names: list[str]) -> list[Path]:
    found = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not names:
        return found
    picked = [p for p in found if p.stem in names or p.name in names or p.stem[:2] in names]
    missing = set(names) - {p.stem for p in picked} - {p.name for p in picked} - {p.stem[:2] for p in picked}
    if missing:
        sys.exit(f"make_book: no chapter named {', '.join(sorted(missing))} in notebooks/")
    return picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="chapters to make (e.g. 04_ppo or 04); default: all")
    ap.add_argument("--profile", default="cpu-full", help="the profile every chapter runs under (default: cpu-full)")
    ap.add_argument("--run-dir", default="", help="a run directory to reuse (default: runs/<profile>)")
    ap.add_argument("--out", default=str(ROOT / book.BOOK_DIR), help="where the copies go (default: docs/chapters)")
    ap.add_argument("--timeout", type=int, default=None, help="seconds one cell may run (default: no limit)")
    ap.add_argument("--check", action="store_true", help="only check the copies against the chapters")
    args = ap.parse_args(argv)

    out = Path(args.out)
    if args.check:
        problems = [p for src in chapters(args.names) for p in book.check_copy(src, out / src.name)]
        print("\n".join(problems) or f"every copy in {out} is up to date")
        return 1 if problems else 0
    if args.profile not in book.BOOK_PROFILES:
        print(f"make_book: warning: profile '{args.profile}' is not one the book shows "
              f"({', '.join(book.BOOK_PROFILES)}); tests/test_book.py will reject these copies", file=sys.stderr)
    run_dir = Path(args.run_dir).expanduser() if args.run_dir else None
    # The kernels inherit this environment: MPLBACKEND=Agg (set by the tests, or a shell) would
    # keep every plot out of the copies; without it Jupyter's inline backend embeds them as PNGs.
    os.environ.pop("MPLBACKEND", None)
    for src in chapters(args.names):
        t0 = time.time()
        print(f"[book] {src.name}: running under {args.profile}"
              + (f" in {run_dir}" if run_dir else " in runs/" + args.profile), flush=True)
        target = book.make_copy(src, out, args.profile, run_dir, ROOT, timeout=args.timeout)
        print(f"[book] {src.name}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
              f"({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
