"""ROUGE as a local `evaluate` metric module, wrapping Google's `rouge-score` package.

Why this file exists: ``evaluate.load("rouge")`` downloads the metric script from the Hugging
Face Hub and fails offline. ``evaluate.load`` also accepts a local folder that contains a script
with the folder's name (``.../rouge/rouge.py``); this is that script, so the familiar interface
works with no network::

    import evaluate
    rouge = evaluate.load("/path/to/girl_lib/metrics/rouge")   # or girl_lib.metrics.load_metric("rouge")
    rouge.compute(predictions=["the cat sat"], references=[["the cat sat", "a dog"]])
    # {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0, 'rougeLsum': 1.0}

It mirrors the Hub's ``rouge`` module (same arguments, same output keys) with one deliberate
difference: the aggregate is the plain mean of the per-prediction F1 scores, not the median of a
bootstrap resample (random, and slightly different from the mean). Keep this script
self-contained: ``evaluate`` copies it alone into its module cache before importing it.
"""
import datasets
import evaluate
from rouge_score import rouge_scorer

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with one or
more references by n-gram overlap (rouge1, rouge2) and by longest common subsequence (rougeL;
rougeLsum splits on newlines first). Each score is the F1 of precision and recall. With several
references per prediction the best-matching one (highest F1) counts. Tokenisation is
rouge-score's: lowercase, every run of characters outside [a-z0-9] is a separator.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, or a list of lists (several references per prediction).
    rouge_types: subset of ["rouge1", "rouge2", "rougeL", "rougeLsum"] (default: all four).
    use_aggregator: True (default) -> one float per type (mean over predictions);
        False -> one list of per-prediction scores per type.
    use_stemmer: apply the Porter stemmer to tokens longer than 3 characters (default False).
Returns:
    dict rouge type -> F1 in [0, 1] (float or list).
Examples:
    >>> rouge.compute(predictions=["a b c"], references=["a b d"], rouge_types=["rouge1"])
    {'rouge1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://en.wikipedia.org/wiki/ROUGE_(metric)"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False):
        rouge_types = list(rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"])
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        per_type = {t: [] for t in rouge_types}
        for prediction, refs in zip(predictions, references):
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not refs:
                raise ValueError(f"prediction {prediction!r} has no reference")
            best = scorer.score_multi(refs, prediction)  # max F1 over the references, per type
            for t in rouge_types:
                per_type[t].append(float(best[t].fmeasure))
        if not use_aggregator:
            return per_type
        return {t: (sum(v) / len(v) if v else 0.0) for t, v in per_type.items()}
