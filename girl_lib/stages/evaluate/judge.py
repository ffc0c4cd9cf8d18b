"""A pairwise judge of generated JDs on the GIRL paper's three dimensions.

The paper asked an LLM which of two JDs written for the same CV is better on **level of
detail**, **relevance** and **conciseness**, and reported win / tie / lose rates of its model
against each baseline. This module keeps that protocol and offers two judges:

* :class:`RubricJudge` (default) — deterministic and explained. Two of its dimensions come from
  the world's oracle, which knows the seeker's latent truth, so they are **not independent of
  the kit**: its ``relevance`` *is* the oracle's verdict, the same quantity PPO's reward model
  was trained to imitate. The fourth dimension uses no oracle at all:

  ============== ==================================================================== ========
  dimension      score of one JD, in [0, 1]                                           source
  ============== ==================================================================== ========
  detail         share of the 7 things a JD should state that it does state: title,   parser
                 an ESCO-recognisable role, level, must-have skills, location, salary,
                 nice-to-have skills
  relevance      ``p_accept x seeker_interest``: the recruiter would accept this      oracle
                 person *and* the person wants the job
  conciseness    ``min(1, W / words) x distinct-2``: full marks up to ``W`` words     text
                 (``eval.judge_concise_words``), less beyond; repeated phrases cost
  similarity     cosine of the JD's embedding with the mean embedding of the real     embedder
                 postings whose recruiter accepted this seeker (all-MiniLM-L6-v2, a
                 model no stage trained; no oracle involved); ties when the seeker has
                 no accepted posting
  ============== ==================================================================== ========

  On each dimension the higher score wins; a difference of at most ``eval.judge_tie_margin``
  is a tie. :meth:`RubricJudge.explain` shows the numbers behind every verdict.
* :class:`EndpointJudge` — any OpenAI-compatible chat endpoint (``girl evaluate --judge-url
  http://host/v1``; the API key is read from the environment variable named by
  ``eval.judge_api_key_env``, ``GIRL_JUDGE_API_KEY`` by default). Same protocol, same output.

**Both orders.** LLM judges prefer whichever answer comes first (position bias), so every pair
is judged twice, A first and B first. Each judgement votes +1 (A better), 0 or -1 on each
dimension; the two votes are added: a positive sum is a *win* for A, a negative one a *loss*,
zero a *tie* (so one win and one tie is a win; a win in one order and a loss in the other is a
tie: the judge only preferred the first position). Swapping A and B swaps wins and losses
exactly. ``advantage = win - lose`` in [-1, 1]; ``order_agreement`` is the share of pairs on
which both orders gave the same verdict (always 1 for the rubric judge, which cannot see order).
Each rate carries its Wilson interval, and ``advantage`` its paired interval and the exact
McNemar (sign) test of wins against losses, over the judged seekers.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from typing import Callable, Sequence

from ...errors import GirlError
from ...stats import paired_difference, rate
from ...world import Oracle

DIMENSIONS = ("detail", "relevance", "conciseness")  # the paper's three
ORACLE_FREE = "similarity"  # the rubric's fourth dimension, computed without the oracle


# --------------------------------------------------------------------------------------------
# The rubric judge
# --------------------------------------------------------------------------------------------
def distinct_2_in(text: str) -> float:
    """Unique word bigrams / bigrams within one text (1.0 for texts shorter than two words)."""
    words = text.lower().split()
    grams = list(zip(words, words[1:]))
    return len(set(grams)) / len(grams) if grams else 1.0


class RubricJudge:
    """Scores each JD on the three dimensions (see the module docstring) and compares the scores."""
    name = "rubric"

    def __init__(self, oracle=None, tie_margin: float = 0.05, concise_words: int = 90,
                 similarity: Callable[[dict, str], float | None] | None = None):
        self.oracle = oracle or Oracle()
        self.tie_margin = tie_margin
        self.concise_words = concise_words
        self.similarity = similarity  # (seeker, jd) -> cosine to the seeker's accepted postings, or None
        self.dimensions = DIMENSIONS + ((ORACLE_FREE,) if similarity is not None else ())

    def explain(self, seeker: dict, jd: str) -> dict:
        """The three scores of one JD for one seeker, with the figures they come from."""
        sc = self.oracle.score(seeker, jd)
        p = sc.parsed
        stated = {"title": p.title is not None, "role": p.occupation_id is not None, "level": p.level is not None,
                  "must_have": bool(p.must_have), "location": p.location is not None or p.remote,
                  "salary": p.salary_min is not None or p.salary_max is not None,
                  "nice_to_have": bool(p.nice_to_have)}
        words = len(jd.split())
        d2 = distinct_2_in(jd)
        out = {
            "detail": sum(stated.values()) / len(stated),
            "relevance": sc.p_accept * sc.seeker_interest,
            "conciseness": min(1.0, self.concise_words / max(words, 1)) * d2,
            "why": {"stated": stated, "p_accept": round(sc.p_accept, 3),
                    "seeker_interest": round(sc.seeker_interest, 3), "words": words, "distinct_2": round(d2, 3)},
        }
        if self.similarity is not None:
            out[ORACLE_FREE] = self.similarity(seeker, jd)
        return out

    def __call__(self, seeker: dict, first: str, second: str) -> dict[str, int]:
        """+1 where ``first`` is better, -1 where ``second`` is, 0 for a tie, per dimension."""
        a, b = self.explain(seeker, first), self.explain(seeker, second)
        out = {}
        for dim in self.dimensions:
            if a[dim] is None or b[dim] is None:  # nothing to compare with (no accepted posting)
                out[dim] = 0
                continue
            diff = a[dim] - b[dim]
            out[dim] = 0 if abs(diff) <= self.tie_margin else (1 if diff > 0 else -1)
        return out


# --------------------------------------------------------------------------------------------
# An LLM behind any OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------
JUDGE_SYSTEM = "You are an experienced technical recruiter. You compare job descriptions fairly and answer in JSON."
JUDGE_TEMPLATE = """Two job descriptions were written for the same candidate.

Candidate CV:
{cv}

Job description 1:
{first}

Job description 2:
{second}

Compare them on three dimensions:
- "detail": which one states more of what a candidate needs to know (title, level, location, salary, required skills)?
- "relevance": which job suits this candidate better: would the employer hire them, and would they want it?
- "conciseness": which one says it with fewer needless or repeated words?

Answer with JSON only, each value "1", "2" or "tie":
{{"detail": "...", "relevance": "...", "conciseness": "..."}}"""


def parse_verdict(content: str) -> dict[str, int] | None:
    """``{"detail": "1", ...}`` in a model's answer -> ``{"detail": +1, ...}``; None if unreadable."""
    match = re.search(r"\{.*?\}", content or "", re.DOTALL)
    if not match:
        return None
    try:
        raw = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    vote = {"1": 1, "2": -1, "tie": 0}
    out = {}
    for dim in DIMENSIONS:
        v = str(raw.get(dim, "")).strip().lower()
        if v not in vote:
            return None
        out[dim] = vote[v]
    return out


class EndpointJudge:
    """The same protocol through ``POST {base_url}/chat/completions`` (OpenAI's chat API).

    Deterministic where the server allows it (``temperature=0``). An answer that cannot be read
    counts as a tie on every dimension and is counted in ``unparsed``; a server that cannot be
    reached stops the evaluation with a one-line error.
    """
    name = "endpoint"

    def __init__(self, base_url: str, model: str, api_key_env: str = "GIRL_JUDGE_API_KEY", timeout_s: float = 60.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env, "")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.unparsed = 0
        self.calls = 0

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
            raise GirlError(f"judge endpoint {self.url} answered HTTP {e.code}{hint}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise GirlError(f"judge endpoint {self.url} failed: {getattr(e, 'reason', e)}") from None
        self.calls += 1
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise GirlError(f"judge endpoint {self.url} did not answer in the chat-completions format") from None

    def __call__(self, seeker: dict, first: str, second: str) -> dict[str, int]:
        content = self.complete([
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_TEMPLATE.format(cv=seeker["cv_text"], first=first, second=second)},
        ])
        verdict = parse_verdict(content)
        if verdict is None:
            self.unparsed += 1
            return {dim: 0 for dim in DIMENSIONS}
        return verdict


def make_judge(eval_cfg, oracle=None, similarity=None):
    """The judge the profile asks for: the endpoint when ``eval.judge_url`` is set, else the rubric
    (with the oracle-free ``similarity`` dimension when a ``similarity(seeker, jd)`` is given)."""
    if eval_cfg.judge_url:
        return EndpointJudge(eval_cfg.judge_url, eval_cfg.judge_model, eval_cfg.judge_api_key_env,
                             eval_cfg.judge_timeout_s)
    return RubricJudge(oracle, tie_margin=eval_cfg.judge_tie_margin, concise_words=eval_cfg.judge_concise_words,
                       similarity=similarity)


# --------------------------------------------------------------------------------------------
# The protocol: both orders, win / tie / lose, advantage
# --------------------------------------------------------------------------------------------
def compare(judge: Callable[[dict, str, str], dict[str, int]], seekers: Sequence[dict],
            texts_a: Sequence[str], texts_b: Sequence[str]) -> dict:
    """Judge A against B for every seeker, in both orders; rates per dimension.

    Returns ``{dim: {"win", "tie", "lose", "advantage", "order_agreement", "win_ci", "lose_ci",
    "advantage_test"}, "n": pairs}``, the rates from A's point of view (see the module docstring
    for how two orders combine); ``advantage_test`` is the paired difference of win and loss
    indicators over seekers (its interval, n and the exact McNemar p-value).
    """
    if not (len(seekers) == len(texts_a) == len(texts_b)):
        raise ValueError(f"{len(seekers)} seekers, {len(texts_a)} A texts, {len(texts_b)} B texts")
    dims = getattr(judge, "dimensions", DIMENSIONS)
    totals = {dim: [] for dim in dims}
    agree = {dim: 0 for dim in dims}
    for seeker, a, b in zip(seekers, texts_a, texts_b):
        a_first = judge(seeker, a, b)
        b_first = judge(seeker, b, a)
        for dim in dims:
            v1, v2 = a_first[dim], -b_first[dim]  # both from A's point of view
            totals[dim].append(v1 + v2)
            agree[dim] += v1 == v2
    n = len(seekers)
    out: dict = {"n": n}
    for dim in dims:
        t = totals[dim]
        win, lose = [int(x > 0) for x in t], [int(x < 0) for x in t]
        rates = {"win": sum(win) / n if n else 0.0, "lose": sum(lose) / n if n else 0.0}
        rates["tie"] = (n - sum(win) - sum(lose)) / n if n else 0.0
        rates["advantage"] = rates["win"] - rates["lose"]
        rates["order_agreement"] = agree[dim] / n if n else 0.0
        rates["win_ci"], rates["lose_ci"] = rate(sum(win), n)["ci"], rate(sum(lose), n)["ci"]
        rates["advantage_test"] = paired_difference(win, lose)
        out[dim] = rates
    return out
