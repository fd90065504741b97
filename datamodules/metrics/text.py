"""Text-matching metrics: label accuracy, SQuAD F1/EM and ROUGE-L (paper appendix B.7).

* ``accuracy``: SST-2, RTE, QNLI, BoolQ and COPA, scored on the generated label word.
* ``f1_em``: SQuAD v1.1 and ReCoRD, "the average of the F1 score and the exact match score",
  with the official SQuAD v1.1 evaluation script's normalisation and token F1.
* ``rouge_l``: E2E, "the ROUGE-L metric ... [from] the HuggingFace Evaluate package", which
  wraps Google's ``rouge_score``; we compute the same quantity with torchmetrics (offline).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from torchmetrics.functional.text import rouge_score

from datamodules.metrics.core import ExampleScore, target_field

# ``\w`` keeps letters and digits of any script; "_" is punctuation here so that the GLUE
# label ``not_entailment`` normalises to the paper's label name "not entailment".
_LABEL_PUNCT_RE = re.compile(r"[^\w\s]|_")
_SQUAD_PUNCT = frozenset(string.punctuation)
_SQUAD_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def first_line(text: str) -> str:
    """Return the generation up to its first line break, ignoring leading whitespace.

    Short-answer generations that do not stop at EOS run on ("positive\\n\\nsentence: ..."),
    and the answer is what comes first. Leading blank lines are skipped so that a model
    that starts its response with a newline is not scored as empty.
    """
    return text.lstrip().split("\n", 1)[0]


def normalize_answer(text: str) -> str:
    """Normalise a generated label or a gold label word for ``accuracy``.

    Takes :func:`first_line`, lowercases, turns punctuation (including ``_``) into spaces and
    collapses whitespace. Comparison after this is exact, so "not entailment" never equals
    "entailment" while "Entailment." and " entailment " do.

    This is the classification normaliser; the SQuAD one (which also drops articles) is
    :func:`normalize_squad_answer`.

    Args:
        text: a generation or a label word.

    Returns:
        The normalised string, e.g. ``"Not_Entailment."`` -> ``"not entailment"``.
    """
    return " ".join(_LABEL_PUNCT_RE.sub(" ", first_line(text).lower()).split())


def accuracy_example(prediction: str, target: Mapping[str, Any]) -> ExampleScore:
    """Score a label generation: 1.0 iff it equals ``target["label_word"]`` after normalising.

    Args:
        prediction: the generated response.
        target: needs ``"label_word"`` (falls back to ``"text"``, the gold response, which
            is the label word in the appendix C templates).
    """
    gold = normalize_answer(str(target_field(target, "label_word")))
    return ExampleScore(float(normalize_answer(prediction) == gold))


def normalize_squad_answer(text: str) -> str:
    """The official SQuAD v1.1 ``normalize_answer``: lower, drop punctuation/articles, squash.

    Order matters and follows the official script: punctuation is removed (not replaced by
    spaces) before articles, so "don't" -> "dont".
    """
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_SQUAD_ARTICLES_RE.sub(" ", text).split())


def squad_f1(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between two answers, as in the official SQuAD v1.1 script."""
    pred_tokens = normalize_squad_answer(prediction).split()
    gold_tokens = normalize_squad_answer(ground_truth).split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(prediction: str, ground_truth: str) -> float:
    """1.0 iff the normalised answers are equal, as in the official SQuAD v1.1 script."""
    return float(normalize_squad_answer(prediction) == normalize_squad_answer(ground_truth))


def _answers(target: Mapping[str, Any]) -> list[str]:
    answers = target_field(target, "answers")
    # Accept the Hub's SQuAD layout {"text": [...], "answer_start": [...]} as well.
    if isinstance(answers, Mapping):
        answers = answers["text"]
    answers = [answers] if isinstance(answers, str) else list(answers)
    if not answers:
        raise ValueError("f1_em target has no gold answers")
    return answers


def f1_em_example(prediction: str, target: Mapping[str, Any]) -> ExampleScore:
    """Score a span answer: (F1 + EM) / 2, each the max over the gold answers.

    The max over ground truths and the unweighted mean of the two are what the paper's
    "f1-em" means (appendix B.7); averaging per example and then over examples equals
    averaging the dataset-level F1 and EM. The generation is cut at its first line break
    (:func:`first_line`) because a span never contains one.

    Args:
        prediction: the generated answer.
        target: needs ``"answers"`` (list of gold strings, or the Hub's ``{"text": [...]}``);
            falls back to ``"text"``.

    Returns:
        ``ExampleScore(value, {"f1": f1, "em": em})``.
    """
    pred = first_line(prediction)
    answers = _answers(target)
    f1 = max(squad_f1(pred, gold) for gold in answers)
    em = max(squad_exact_match(pred, gold) for gold in answers)
    return ExampleScore((f1 + em) / 2, {"f1": f1, "em": em})


def _references(target: Mapping[str, Any]) -> list[str]:
    refs = target_field(target, "references")
    refs = [refs] if isinstance(refs, str) else list(refs)
    if not refs:
        raise ValueError("rouge_l target has no references")
    return refs


def rouge_l_example(prediction: str, target: Mapping[str, Any]) -> ExampleScore:
    """ROUGE-L F-measure against the best of several references.

    Matches HF Evaluate's ``rouge`` as used in the paper (appendix B.7): ``rouge_score``'s
    default tokeniser (lowercase, non-``[a-z0-9]`` to spaces), no stemmer
    (``use_stemmer=False`` is Evaluate's default) and, with several references,
    ``score_multi``, which keeps the reference with the highest F-measure. torchmetrics
    implements exactly this (``accumulate="best"``) without nltk or downloads.
    Evaluate's default bootstrap aggregation reports a resampled median of the mean; the
    registry reports the plain mean, which is what that estimate targets. Values carry
    torchmetrics' float32 precision (about 1e-7).

    Args:
        prediction: the generated text (used whole: E2E outputs are single paragraphs).
        target: needs ``"references"`` (list of strings; falls back to ``"text"``).

    Returns:
        ``ExampleScore(f, {"rouge_l_precision": p, "rouge_l_recall": r})`` of the best reference.
    """
    refs: Sequence[str] = _references(target)
    result = rouge_score(prediction, refs, rouge_keys="rougeL", accumulate="best")
    return ExampleScore(
        float(result["rougeL_fmeasure"]),
        {
            "rouge_l_precision": float(result["rougeL_precision"]),
            "rouge_l_recall": float(result["rougeL_recall"]),
        },
    )
