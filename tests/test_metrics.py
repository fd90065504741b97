"""Tests for the generation metrics (paper appendix B.7); every expected value is hand-checked."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import pytest
from test_metrics_wikisql import GOLD_SQL, GOLD_TEXT, TABLE
from torchmetrics.text import ROUGEScore, SQuAD

from datamodules.metrics import (
    METRICS,
    extract_gsm8k_number,
    normalize_answer,
    normalize_squad_answer,
    score,
)

# --------------------------------------------------------------------------- registry


def test_registry_names_and_every_task_metric_is_registered() -> None:
    """The task declares its metric (one source); every shipped task names a registered one."""
    from datamodules import TASKS

    assert set(METRICS) == {"accuracy", "f1_em", "rouge_l", "gsm8k_accuracy", "wikisql_execution"}
    declared = {name: cls.metric for name, cls in TASKS.items() if cls.metric is not None}
    assert declared == {
        "sst2": "accuracy", "rte": "accuracy", "qnli": "accuracy", "boolq": "accuracy",
        "copa": "accuracy", "squad": "f1_em", "record": "f1_em", "e2e": "rouge_l",
        "gsm8k": "gsm8k_accuracy", "wikisql": "wikisql_execution",
    }
    assert set(declared.values()) <= set(METRICS)


def test_score_rejects_bad_calls() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", ["a"], [{"text": "a"}])
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        score("accuracy", ["a"], [{"text": "a"}, {"text": "b"}])
    with pytest.raises(ValueError, match="no examples"):
        score("accuracy", [], [])


def test_malformed_target_is_loud() -> None:
    with pytest.raises(KeyError):
        score("accuracy", ["yes"], [{"label": 1}])
    with pytest.raises(ValueError, match="no gold answers"):
        score("f1_em", ["x"], [{"text": "x", "answers": []}])


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Entailment.", "entailment"),
        ("  not_entailment ", "not entailment"),
        ("Not  entailment!", "not entailment"),
        ("positive\n\nsentence: it was bad", "positive"),
        ("\n negative", "negative"),
        ("1.", "1"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def _label(word: str) -> dict[str, Any]:
    return {"text": word, "label_word": word}


def test_accuracy_exact_after_normalising() -> None:
    predictions = [
        "Entailment.",  # right
        "not entailment",  # wrong: must not count as "entailment"
        "entailment",  # wrong: must not count as "not entailment"
        "Not entailment\nsentence 1: ...",  # right, run-on cut at the line break
        "",  # empty
        "2",  # COPA, wrong choice
        "1.",  # COPA, right
        "The answer is yes",  # not the label word itself
    ]
    targets = [
        _label("entailment"),
        _label("entailment"),
        _label("not_entailment"),
        _label("not entailment"),
        _label("positive"),
        _label("1"),
        _label("1"),
        _label("yes"),
    ]
    result = score("accuracy", predictions, targets)
    assert result.per_example == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert result.value == pytest.approx(3 / 8)
    assert result.extras == {}
    assert result.num_examples == 8


def test_accuracy_falls_back_to_text() -> None:
    assert score("accuracy", ["Negative"], [{"text": "negative"}]).value == 1.0


# --------------------------------------------------------------------------- f1_em

# The official SQuAD v1.1 evaluation script (evaluate-v1.1.py), verbatim but for names, as
# the reference the implementation must equal.


def _official_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _official_em(prediction: str, ground_truth: str) -> bool:
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


SQUAD_CASES: list[tuple[str, list[str]]] = [
    ("The Denver Broncos", ["Denver Broncos"]),
    ("Denver Broncos team", ["Denver Broncos"]),
    ("Carolina Panthers", ["Denver Broncos", "Carolina Panthers", "the Panthers"]),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara, California"]),
    ("an apple a day", ["apple day"]),
    ("Levis Stadium", ["Levi's Stadium"]),
    ("1876-1901", ["1876–1901", "from 1876 to 1901"]),
    ("the the the", ["the"]),
    ("gold", ["golden anniversary"]),
    ("", ["Denver Broncos"]),
    ("wrong answer", ["Denver Broncos"]),
]


def test_normalize_squad_answer_is_official() -> None:
    assert normalize_squad_answer("The  Denver Broncos!") == "denver broncos"
    # Punctuation is deleted, not spaced, before articles go: the official order.
    assert normalize_squad_answer("Levi's the-Stadium") == "levis thestadium"
    for prediction, answers in SQUAD_CASES:
        for text in [prediction, *answers]:
            assert normalize_squad_answer(text) == _official_normalize_answer(text)


def test_f1_em_hand_values() -> None:
    targets = [{"text": a[0], "answers": a} for _, a in SQUAD_CASES[:3]]
    result = score("f1_em", [p for p, _ in SQUAD_CASES[:3]], targets)
    # "Denver Broncos team" vs "Denver Broncos": P = 2/3, R = 1, F1 = 0.8, EM = 0.
    assert result.per_example == pytest.approx([1.0, 0.4, 1.0])
    assert result.extras == pytest.approx({"f1": (1 + 0.8 + 1) / 3, "em": 2 / 3})
    assert result.value == pytest.approx((result.extras["f1"] + result.extras["em"]) / 2)


def test_f1_em_equals_official_script_and_torchmetrics() -> None:
    predictions = [p for p, _ in SQUAD_CASES]
    targets = [{"text": a[0], "answers": a} for _, a in SQUAD_CASES]
    result = score("f1_em", predictions, targets)
    for (prediction, answers), value in zip(SQUAD_CASES, result.per_example, strict=True):
        f1 = max(_official_f1(prediction, a) for a in answers)
        em = max(float(_official_em(prediction, a)) for a in answers)
        assert value == (f1 + em) / 2  # exact, both in float64
    # torchmetrics agrees except where an answer normalises to nothing ("the the the"): it
    # follows SQuAD v2.0 there (F1 = 1 if both are empty), v1.1 gives 0. Hence our own code.
    assert result.per_example[SQUAD_CASES.index(("the the the", ["the"]))] == 0.5
    kept = [i for i, (p, _) in enumerate(SQUAD_CASES) if normalize_squad_answer(p)]
    squad = SQuAD()(
        [{"prediction_text": SQUAD_CASES[i][0], "id": str(i)} for i in kept],
        [{"answers": {"text": SQUAD_CASES[i][1], "answer_start": [0]}, "id": str(i)} for i in kept],
    )
    kept_result = score("f1_em", [predictions[i] for i in kept], [targets[i] for i in kept])
    assert kept_result.extras["f1"] * 100 == pytest.approx(float(squad["f1"]), abs=1e-4)
    assert kept_result.extras["em"] * 100 == pytest.approx(float(squad["exact_match"]), abs=1e-4)


def test_f1_em_accepts_hub_answers_layout_and_cuts_run_on() -> None:
    target = {
        "text": "Denver Broncos",
        "answers": {"text": ["Denver Broncos"], "answer_start": [1]},
    }
    result = score("f1_em", ["Denver Broncos\nQuestion: who lost?"], [target])
    assert result.per_example == [1.0]


# --------------------------------------------------------------------------- rouge_l


def test_rouge_l_hand_computed_lcs() -> None:
    # LCS("the cat was found under the bed", "the cat was under the bed") = 6 tokens:
    # P = 6/7, R = 6/6, F = 2PR / (P + R) = 12/13.
    one = score(
        "rouge_l", ["The cat was found under the bed."], [_refs("the cat was under the bed")]
    )
    assert one.value == pytest.approx(12 / 13, abs=1e-6)
    assert one.extras == pytest.approx(
        {"rouge_l_precision": 6 / 7, "rouge_l_recall": 1.0}, abs=1e-6
    )
    # Lin (2004): "police killed the gunman" vs "police kill the gunman" has LCS 3 (F = 3/4),
    # vs "the gunman kill police" LCS 2 (F = 1/2); with both references the best counts.
    two = score(
        "rouge_l",
        ["police killed the gunman", "police killed the gunman"],
        [
            _refs("the gunman kill police"),
            _refs("the gunman kill police", "police kill the gunman"),
        ],
    )
    assert two.per_example == pytest.approx([0.5, 0.75], abs=1e-6)


def _refs(*references: str) -> dict[str, Any]:
    return {"text": references[0], "references": list(references)}


def test_rouge_l_tokenisation_is_rouge_scores_default() -> None:
    # Lowercase; anything outside [a-z0-9] splits ("Café" -> "caf", "5-star" -> "5 star");
    # no stemming ("prices" != "price").
    result = score(
        "rouge_l",
        ["CAF\u00c9 Adriatic: 5-star!", "prices"],
        [_refs("caf adriatic 5 star"), _refs("price")],
    )
    assert result.per_example == pytest.approx([1.0, 0.0])


def test_rouge_l_matches_torchmetrics_corpus_score() -> None:
    predictions = ["The Vaults is a pub near Cafe Adriatic.", "Aromi is an English place.", ""]
    refs = [
        ["The Vaults pub near Café Adriatic has a 5 star rating.", "The Vaults is a pub."],
        ["Aromi is an English restaurant in the city centre."],
        ["Anything at all."],
    ]
    result = score("rouge_l", predictions, [_refs(*r) for r in refs])
    expected = ROUGEScore(rouge_keys="rougeL", accumulate="best")(predictions, refs)
    assert result.value == pytest.approx(float(expected["rougeL_fmeasure"]), abs=1e-6)
    assert result.per_example[2] == 0.0  # empty prediction


# --------------------------------------------------------------------------- gsm8k


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She sells 1 and 2 = <<1+2=3>>3\n#### 1,000", "1000"),
        ("The answer is $18.", "18"),
        ("She has 5 apples and eats 2, so she has 7", "7"),
        ("#### 72\n\nQuestion: what is 3 + 4?", "72"),
        ("so the total is 40.\n#### -3", "-3"),
        ("#### 5 then 7", "5"),
        ("The answer is 42.\n####", "42"),
        ("It costs -$5 and 1,250.50 dollars", "1250.50"),
        ("Pages 3-5", "5"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_gsm8k_number(text: str, expected: str | None) -> None:
    assert extract_gsm8k_number(text) == expected


def test_gsm8k_accuracy() -> None:
    predictions = ["... #### 72.0", "We get 1000.", "#### 71", "", "I do not know", "$18.\n"]
    targets = [
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 1,000", "answer_number": "1,000"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "#### 72", "answer_number": "72"},
        {"text": "Janet makes 9 * 2 = $<<9*2=18>>18.\n#### 18"},  # gold from the text
    ]
    result = score("gsm8k_accuracy", predictions, targets)
    assert result.per_example == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert result.value == pytest.approx(0.5)


# --------------------------------------------------------------------------- all metrics

_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "accuracy": ("positive", _label("positive")),
    "f1_em": ("Denver Broncos", {"text": "Denver Broncos", "answers": ["Denver Broncos"]}),
    "rouge_l": ("the cat sat", _refs("the cat sat")),
    "gsm8k_accuracy": ("#### 7", {"text": "#### 7", "answer_number": "7"}),
    "wikisql_execution": (GOLD_TEXT, {"text": GOLD_TEXT, "sql": GOLD_SQL, "table": TABLE}),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_metric_scores_right_wrong_and_empty(metric: str) -> None:
    right, target = _EXAMPLES[metric]
    wrong = "zebra 12345 SELECT nothing"
    result = score(metric, [right, wrong, ""], [target] * 3)
    assert result.per_example == pytest.approx([1.0, 0.0, 0.0])
    assert result.value == pytest.approx(1 / 3)
