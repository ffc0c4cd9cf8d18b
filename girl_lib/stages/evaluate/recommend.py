"""``girl recommend``: a JD written for one CV, plus the closest real postings (grounding)."""
from __future__ import annotations

from pathlib import Path

from ...config import Profile
from ...embed import load_embedder
from ...errors import GirlError
from ...generators import LABELS, best_generator, generate_jds
from ...world import parse_jd
from .grounding import top_k as nearest
from .stage import job_embeddings, load_world


def recommend(cfg: Profile, run_dir: Path, cv_text: str, top_k: int = 5, arm: str | None = None) -> dict:
    """A JD written for ``cv_text`` by the best trained arm, and the ``top_k`` closest real postings."""
    run_dir = Path(run_dir)
    if not cv_text.strip():
        raise GirlError("the CV is empty")
    if top_k < 1:
        raise GirlError(f"--top-k must be >= 1, got {top_k}")
    arm = arm or best_generator(run_dir, cfg.name)
    world = load_world(run_dir)
    out = generate_jds(cfg, run_dir, arm, [cv_text])
    text = out.texts[0]
    embedder = load_embedder(cfg.eval.embedder, cfg.device)
    job_emb = job_embeddings(cfg, run_dir, world["jobs"], embedder)
    idx, sims = nearest(embedder.encode([text]), job_emb, top_k)
    postings = []
    for rank, (i, sim) in enumerate(zip(idx[0], sims[0]), start=1):
        j = world["jobs"][int(i)]
        postings.append({"rank": rank, "job_id": j["id"], "similarity": round(float(sim), 4),
                         "title": j.get("title"), "company": j.get("company"), "level": j.get("level"),
                         "location": j.get("location") or ("remote" if j.get("remote") else None),
                         "salary_min": j.get("salary_min"), "salary_max": j.get("salary_max"),
                         "jd_text": j["jd_text"]})
    parsed = parse_jd(text).to_dict()
    return {"arm": arm, "embedder": embedder.name, "generated_jd": text, "finished": out.finished[0],
            "parsed": {k: parsed[k] for k in ("title", "occupation_id", "level", "must_have", "nice_to_have",
                                                "location", "remote", "salary_min", "salary_max", "ok", "missing")},
            "postings": postings}


def format_recommendation(rec: dict) -> str:
    """``girl recommend``'s human-readable output."""
    lines = [f"Generated JD ({LABELS[rec['arm']]} arm):", "", rec["generated_jd"], "",
             f"Closest real postings ({rec['embedder']} cosine similarity):"]
    for p in rec["postings"]:
        salary = f"EUR {p['salary_min']:,}-{p['salary_max']:,}" if p.get("salary_min") and p.get("salary_max") else ""
        lines.append(f"{p['rank']:>3}. {p['similarity']:.3f}  {p['job_id']}  {p['title']} — {p['company']}, "
                     f"{p['location']} {salary}".rstrip())
    return "\n".join(lines)
