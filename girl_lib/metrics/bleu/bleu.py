"""Corpus BLEU as a local `evaluate` metric module, wrapping `sacrebleu`.

``evaluate.load("sacrebleu")`` needs the Hugging Face Hub; ``evaluate.load`` on this folder
(``.../bleu``, which holds ``bleu.py``) works offline::

    bleu = evaluate.load("/path/to/girl_lib/metrics/bleu")   # or girl_lib.metrics.load_metric("bleu")
    bleu.compute(predictions=["the cat sat on the mat"],
                 references=[["the cat sat on the mat", "a cat was on the mat"]])["score"]   # 100.0

The arguments and output keys are those of the Hub's ``sacrebleu`` module (``score`` on the
0-100 scale sacrebleu reports, not the 0-1 of the Hub's ``bleu`` module), with one extension:
predictions may have different numbers of references (sacrebleu accepts ``None`` for a missing
reference; we pad with it). Keep this script self-contained: ``evaluate`` copies it alone into
its module cache before importing it.
"""
import datasets
import evaluate
import sacrebleu as scb

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
BLEU (Papineni et al., 2002) is the geometric mean of the modified n-gram precisions (n = 1..4)
of the generated texts against their references, pooled over the whole corpus, times a brevity
penalty for outputs shorter than the references. With several references an n-gram counts up to
its maximum count in any one reference, and the closest reference length sets the penalty.
sacrebleu fixes tokenisation (13a by default) so scores are comparable across papers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of lists of references (one list per prediction; lengths may differ),
        or a list of single reference strings.
    smooth_method: "exp" (default), "floor", "add-k" or "none".
    smooth_value: value for "floor" / "add-k".
    lowercase: lowercase before scoring (default False).
    tokenize: sacrebleu tokenizer name (default "13a").
    use_effective_order: skip n-gram orders with no match (sentence-level use; default False).
Returns:
    score (0-100), counts, totals, precisions (0-100), bp, sys_len, ref_len.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://aclanthology.org/P02-1040/"],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        lowercase=False,
        tokenize=None,
        use_effective_order=False,
    ):
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        if any(len(r) == 0 for r in refs):
            raise ValueError("every prediction needs at least one reference")
        # sacrebleu wants reference *streams*: stream j holds the j-th reference of every
        # prediction; a prediction with fewer references gets None in the remaining streams.
        n_streams = max(len(r) for r in refs)
        streams = [[r[j] if j < len(r) else None for r in refs] for j in range(n_streams)]
        output = scb.corpus_bleu(
            predictions,
            streams,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            lowercase=lowercase,
            tokenize=tokenize if tokenize is not None else scb.BLEU.TOKENIZER_DEFAULT,
            use_effective_order=use_effective_order,
        )
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
