"""Decoding item titles: beam search, free or constrained to the catalogue by a token trie, and
the nearest catalogue title for a free beam."""
from __future__ import annotations

from typing import Sequence

from ...fastpath import decode_attention
from ...textgen import chat_prompt_ids, left_pad

# The system turn of every GenRec prompt (training rows and beam search alike).
SYSTEM_PROMPT = "You are a recommender system. Answer with one title from the catalogue."


class TitleTrie:
    """A token-level prefix tree of catalogue titles, for constrained beam search.

    Each title is stored as the tokens the model writes for it after the assistant header:
    ``tokenizer.encode(title) + [EOS]`` (the chat template puts a newline before the answer, so the
    title is tokenized on its own; ``tests/test_genrec.py`` checks this against the template).
    :meth:`allowed` returns the tokens that continue some title after the tokens generated so
    far; a beam can therefore only ever spell a whole catalogue title and then stop.

    Cost: building tokenizes the titles in one batch call and touches each token once; a
    decoding step walks ``len(generated)`` nodes (at most the longest title) and lists one node's
    children, never the catalogue (``benchmarks/bench_genrec_trie.py`` measures it at 10,000+
    titles).
    """
    def __init__(self, tokenizer, titles: Sequence[str]):
        self.eos = tokenizer.eos_token_id
        self.root: dict = {}
        self.max_len = 0
        self.n_nodes = 0
        self._below: dict[int, int] = {}  # id(node) -> number of titles that pass through it
        self._ids: dict[str, list[int]] = {}  # title -> its token path, EOS included
        titles = list(dict.fromkeys(titles))
        encoded = tokenizer(titles, add_special_tokens=False)["input_ids"] if titles else []
        for title, ids in zip(titles, encoded):
            ids = list(ids) + [self.eos]
            self._ids[title] = ids
            node = self.root
            for t in ids:
                child = node.get(t)
                if child is None:
                    child = node[t] = {}
                    self.n_nodes += 1
                self._below[id(child)] = self._below.get(id(child), 0) + 1
                node = child
            self.max_len = max(self.max_len, len(ids))
        self.n_titles = len(titles)

    def exclusion(self, titles: Sequence[str]) -> dict[int, int]:
        """What :meth:`allowed` needs to never complete one of ``titles`` (a user's history): for each
        node on their paths, how many of them pass through it. Titles not in the trie are ignored."""
        banned: dict[int, int] = {}
        for title in dict.fromkeys(titles):
            node = self.root
            for t in self._ids.get(title, ()):
                node = node[t]
                banned[id(node)] = banned.get(id(node), 0) + 1
        return banned

    def allowed(self, generated: Sequence[int], banned: dict[int, int] | None = None) -> list[int]:
        """Tokens allowed after ``generated``; ``[EOS]`` off the trie (never reached by a constrained beam).

        With ``banned`` (:meth:`exclusion`) a child is allowed only while some title below it is not
        banned, so a beam never spells an excluded title and never walks into a branch that holds
        nothing else; the beams it would have spent there go to the next-best titles."""
        node = self.root
        for t in generated:
            node = node.get(int(t))
            if node is None:
                return [self.eos]
        if banned:
            return [t for t, c in node.items() if self._below[id(c)] > banned.get(id(c), 0)] or [self.eos]
        return list(node) or [self.eos]

    def constraint(self, prompt_width: int, num_beams: int, banned: Sequence[dict[int, int]] | None = None,
                   renormalise: bool = False) -> "TrieConstraint":
        """The logits processor for one ``generate`` call (see :class:`TrieConstraint`)."""
        return TrieConstraint(self, prompt_width, num_beams, banned, renormalise)


class TrieConstraint:
    """A transformers logits processor that keeps beam search on a :class:`TitleTrie`.

    Beam search hands it each row's next-token log-probabilities; every token that does not
    continue a catalogue title (or that leads only to a title in ``banned[prompt]``, the user's
    history) gets ``-inf``. With ``renormalise`` the allowed tokens' log-probabilities are then
    re-normalised to sum to one, so a beam's score is the log-probability of its title *given
    that the answer is a catalogue title*: a token the trie forces (the rest of a company name
    once the model has chosen it) costs nothing, and titles are ranked by the choices the model
    made at the trie's branches. Without it (what transformers' ``prefix_allowed_tokens_fn`` does) a
    forced token still costs what the unconstrained model thought of it.

    Renormalising looks the more principled of the two, but it is off by default (``genrec.renormalise``)
    because it ranked worse on val users: the tuned model gives the company names of the items it saw
    in training higher probability, and that memory of the catalogue is a useful signal which
    renormalisation throws away (docs/results.md, GenRec).
    """
    def __init__(self, trie: TitleTrie, prompt_width: int, num_beams: int,
                 banned: Sequence[dict[int, int]] | None = None, renormalise: bool = False):
        self.trie, self.width, self.num_beams = trie, prompt_width, num_beams
        self.banned, self.renormalise = banned, renormalise

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row, sequence in enumerate(input_ids):
            banned = self.banned[row // self.num_beams] if self.banned is not None else None
            mask[row, self.trie.allowed(sequence[self.width:].tolist(), banned)] = 0.0
        scores = scores + mask
        return torch.log_softmax(scores, dim=-1) if self.renormalise else scores


def dedupe_beams(texts: Sequence[str]) -> list[str]:
    """Beams as a ranked list of titles: stripped, empty ones dropped, repeats dropped (first kept)."""
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def beam_search(model, tokenizer, prompts: Sequence[str], *, num_beams: int = 10, max_new_tokens: int = 40,
                batch_size: int = 4, trie: TitleTrie | None = None, exclude: Sequence[Sequence[str]] | None = None,
                renormalise: bool = False, length_penalty: float = 1.0, system_prompt: str = SYSTEM_PROMPT,
                bf16: bool = False, fast_decode: bool = True, progress: bool = False) -> list[list[str]]:
    """For each prompt, the ``num_beams`` beams of a beam search, best first, deduplicated.

    Prompts are chat-templated and left-padded as in :mod:`girl_lib.textgen`. With ``trie`` the
    search is constrained to catalogue titles and ``max_new_tokens`` is the longest title, so
    every beam ends with EOS on a complete title; ``exclude[i]`` (with ``trie`` only) lists titles
    prompt ``i`` must not get (its history), so all ``num_beams`` beams go to other titles, and
    ``renormalise`` ranks titles by their probability among catalogue titles (:class:`TrieConstraint`;
    beams are then scored by that log-probability itself, not divided by their length). Otherwise a
    beam's score is its log-probability divided by ``length ** length_penalty`` (transformers'
    rule: 1.0 the mean per token, 0.0 the plain sum, which favours short titles). ``bf16``
    runs the model under bfloat16 autocast; ``fast_decode`` the one-token steps with
    :func:`girl_lib.textgen.decode_attention`.

    Cost: transformers copies each prompt ``num_beams`` times *before* the first forward pass, so
    the prompt is processed ``num_beams`` times; on a CPU that prefill dominates, which is why the
    prompts are kept short (``genrec.max_history``).
    """
    import torch
    from transformers import LogitsProcessorList

    if exclude is not None and (trie is None or len(exclude) != len(prompts)):
        raise ValueError("beam_search: exclude needs a trie and one list of titles per prompt")
    ids = chat_prompt_ids(tokenizer, prompts, system_prompt)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if trie is not None:
        max_new_tokens = trie.max_len
    # Constrained, most beams have one allowed token (inside a company name, say); when fewer than
    # 2 x num_beams candidates are allowed, transformers fills the rest with -inf "junk" beams,
    # which end at once (off the trie only EOS is allowed). With early_stopping=True the search
    # stops as soon as num_beams beams have ended, junk included: measured on the cpu world, a
    # user got 4 real titles of 10. early_stopping=False runs to the longest title, and real
    # titles push the junk out of the kept beams (~17 % more time).
    kw = dict(num_beams=num_beams, num_return_sequences=num_beams, do_sample=False, early_stopping=trie is None,
              max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
              pad_token_id=tokenizer.pad_token_id, use_cache=True,
              # a renormalised constrained score is a title's log-probability: no length normalisation
              length_penalty=0.0 if trie is not None and renormalise else length_penalty)
    device = next(model.parameters()).device
    out: list[list[str]] = [[] for _ in prompts]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="beam search" + (" (constrained)" if trie else ""), unit="batch")
    model.eval()
    with decode_attention(model, fast_decode), torch.inference_mode(), \
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in batches:
            input_ids, mask = left_pad([ids[i] for i in batch], tokenizer.pad_token_id)
            extra = {}
            if trie is not None:
                banned = [trie.exclusion(exclude[i]) for i in batch] if exclude is not None else None
                extra["logits_processor"] = LogitsProcessorList(
                    [trie.constraint(input_ids.shape[1], num_beams, banned, renormalise)])
            gen = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kw, **extra)
            texts = tokenizer.batch_decode(gen[:, input_ids.shape[1]:], skip_special_tokens=True)
            for j, i in enumerate(batch):
                out[i] = dedupe_beams(texts[j * num_beams:(j + 1) * num_beams])
    return out


class NearestTitle:
    """Map any text to the closest catalogue title (cosine of character 2-4-gram TF-IDF vectors)."""
    def __init__(self, titles: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.titles = list(titles)
        self.exact = set(self.titles)
        self.vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True)
        self.matrix = self.vec.fit_transform(self.titles)

    def map(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        sims = (self.vec.transform(texts) @ self.matrix.T).toarray()
        return [t if t in self.exact else self.titles[int(row.argmax())] for t, row in zip(texts, sims)]
