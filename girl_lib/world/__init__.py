"""The synthetic recruiting world: real ESCO occupations and skills, synthetic
seekers and jobs, two sides with different preferences, and a ground-truth oracle.

Typical use::

    from girl_lib.world import build_dataset, validate_dir, load_jsonl, Oracle, parse_jd
    counts = build_dataset(profile.data, run_dir / "data")
    seekers = load_jsonl(run_dir / "data" / "seekers.jsonl", "seekers")
    score = Oracle().score(seekers[0], generated_jd_text)   # p_accept, seeker_interest, ...
"""
from .build import build_dataset, world_records
from .generate import World, generate_world
from .io import (FILES, KINDS, MANIFEST, SCHEMAS, draw, infer_kind, is_complete, load_jsonl, load_split,
                 load_world_files, validate_dir, validate_path, write_jsonl)
from .oracle import Oracle, OracleScore
from .parse import ParsedJD, parse_jd
from .taxonomy import LEVELS, Occupation, Taxonomy, load_taxonomy
from .text import CV_STYLES, JD_STYLES, SYSTEM_PROMPT, make_prompt, render_cv, render_jd

__all__ = [
    "build_dataset", "world_records", "World", "generate_world",
    "FILES", "KINDS", "MANIFEST", "SCHEMAS", "draw", "infer_kind", "is_complete", "load_jsonl", "load_split",
    "load_world_files", "validate_dir", "validate_path", "write_jsonl",
    "Oracle", "OracleScore", "LEVELS", "Occupation", "Taxonomy", "load_taxonomy",
    "CV_STYLES", "JD_STYLES", "SYSTEM_PROMPT", "ParsedJD", "make_prompt", "parse_jd", "render_cv",
    "render_jd",
]
