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
        titles = list(dict.fromkeys(titles))
        encoded = tokenizer(titles, add_special_tokens=False)["input_ids"] if titles else []
        for ids in encoded:
            ids = list(ids) + [self.eos]
            node = self.root
            for t in ids:
                child = node.get(t)
                if child is None:
                    child = node[t] = {}
                    self.n_nodes += 1
                node = child
            self.max_len = max(self.max_len, len(ids))
        self.n_titles = len(titles)

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """Tokens allowed after ``generated``; ``[EOS]`` off the trie (never reached by a constrained beam)."""
        node = self.root
        for t in generated:
            node = node.get(int(t))
            if node is None:
                return [self.eos]
        return list(node) or [self.eos]

    def prefix_fn(self, prompt_width: int):
        """The ``prefix_allowed_tokens_fn`` for a batch whose (left-padded) prompts are ``prompt_width`` long."""
        return lambda batch_id, input_ids: self.allowed(input_ids[prompt_width:].tolist())


def dedupe_beams(texts: Sequence[str]) -> list[str]:
    """Beams as a ranked list of titles: stripped, empty ones dropped, repeats dropped (first kept)."""
    return list(dict.fromkeys(t.strip() for t in texts if t.strip()))


def beam_search(model, tokenizer, prompts: Sequence[str], *, num_beams: int = 10, max_new_tokens: int = 40,
                batch_size: int = 4, trie: TitleTrie | None = None, system_prompt: str = SYSTEM_PROMPT,
                bf16: bool = False, fast_decode: bool = True, progress: bool = False) -> list[list[str]]:
    """For each prompt, the ``num_beams`` beams of a beam search, best first, deduplicated.

    Prompts are chat-templated and left-padded as in :mod:`girl_lib.textgen`. With ``trie`` the
    search is constrained to catalogue titles and ``max_new_tokens`` is the longest title, so
    every beam ends with EOS on a complete title. ``bf16`` runs the model under bfloat16 autocast;
    ``fast_decode`` the one-token steps with :func:`girl_lib.textgen.decode_attention`.

    Cost: transformers copies each prompt ``num_beams`` times *before* the first forward pass, so
    the prompt is processed ``num_beams`` times; on a CPU that prefill dominates, which is why the
    prompts are kept short (``genrec.max_history``).
    """
    import torch

    ids = chat_prompt_ids(tokenizer, prompts, system_prompt)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if trie is not None:
        max_new_tokens = trie.max_len
    kw = dict(num_beams=num_beams, num_return_sequences=num_beams, do_sample=False, early_stopping=True,
              max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
              pad_token_id=tokenizer.pad_token_id, length_penalty=1.0, use_cache=True)
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
            extra = {"prefix_allowed_tokens_fn": trie.prefix_fn(input_ids.shape[1])} if trie is not None else {}
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
