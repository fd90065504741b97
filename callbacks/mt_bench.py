"""MT-Bench answers and GPT-4-style pairwise judging (appendix B.7 and D).

``parade predict --config … --config configs/tasks/mt_bench.yaml --config
configs/mt_bench_predict.yaml`` generates an answer to the first turn of each of the 80
questions and writes:

* ``answers.jsonl``: ``question_id, category, question, answer``;
* ``judge_prompts.jsonl`` (when ``compare_with`` names another run's ``answers.jsonl``): the
  appendix-D prompt with this run as assistant 1 and the other as assistant 2;
* with ``judge_url`` set (an OpenAI-compatible ``/v1/chat/completions`` endpoint), the judge is
  called for each prompt, its reviews go to ``judge_reviews.jsonl`` and the parsed scores'
  means to ``judge_scores.json``. No network call is made unless ``judge_url`` is given; a
  failing or unparsable judgement is recorded for its question and never stops the others;
* with ``references`` set, table 3's second column: the ROUGE-L of each answer against a
  reference answer (the paper takes GPT-4's answers as ground truth), per question in
  ``answers.jsonl`` (``rouge_l``) and averaged in ``rouge_l.json`` (also for the
  ``compare_with`` run's answers), and next to the judge scores in ``judge_scores.json``.
  ``references`` is a jsonl file read by :func:`datamodules.instruct.read_reference_answers`
  (FastChat's ``model_answer/gpt-4.jsonl``, another run's ``answers.jsonl``, or rows with
  ``question_id`` and ``reference``), or ``question_file`` for the ``reference`` field of the
  question file itself (MT-Bench has one for its math, reasoning and coding questions only).


The judge's HTTP client (:mod:`callbacks.judge_client`) requires https (plain http only to a
local endpoint with ``allow_insecure_local``), never follows a redirect with the key, bounds
every attempt by a wall-clock deadline with ``max_retries`` retries, and keeps the key out of
every file it writes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from callbacks._io import output_dir, read_jsonl, write_jsonl
from callbacks.judge_client import JudgeClient, check_judge_url, redact
from datamodules.instruct import read_reference_answers
from datamodules.metrics import score
from parade_lightning.distributed import gather_rows

JUDGE_TEMPLATE = """Task Introduction

you will be given a query, and two responses from two assistants, could you compare the two \
responses, and do the following:

(1) write a concise review for each assistant's response, on how well the response answers \
the query, and whether it will be helpful to humans users, and any issues in the response;
(2) assigns a quantitative score on a scale of 10 to each response, reflecting your assessment \
of the two responses

Query:

{query}

Response 1 from assistant 1:

{response1}

Response 2 from assistant 2:

{response2}"""
"""Appendix D's judge prompt, verbatim (including its wording)."""

_SCORE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE)


def parse_scores(review: str) -> tuple[float, float] | None:
    """The two ``x/10`` (or ``x out of 10``) scores of a review, in order; None if absent."""
    found = [float(m) for m in _SCORE.findall(review)]
    if len(found) < 2 or any(s > 10 for s in found[-2:]):
        return None
    return found[-2], found[-1]


class MTBenchWriter(BasePredictionWriter):
    """Write MT-Bench answers, judge prompts and (optionally) judge scores.

    Args:
        output_dir: where to write (None: the trainer's log dir).
        compare_with: another run's ``answers.jsonl`` (assistant 2 in the judge prompts).
        judge_url: OpenAI-compatible chat-completions URL; None makes no network call.
        judge_model: model name sent to the judge (paper: GPT-4).
        api_key_env: environment variable holding the judge's API key (read when judging,
            never written anywhere).
        timeout: wall-clock seconds per judge request attempt.
        max_retries: retries of a request after a transient failure (timeout, 429, 5xx).
        retry_wait: seconds before the first retry (doubled for each further one).
        allow_insecure_local: allow an ``http://`` judge_url on this machine (loopback only).
        references: reference answers for ROUGE-L (table 3): a jsonl file, or
            ``question_file`` for the question file's own ``reference`` field; None: no ROUGE-L.
    """

    def __init__(self, output_dir: str | None = None, compare_with: str | None = None,
                 judge_url: str | None = None, judge_model: str = "gpt-4",
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                 references: str | None = None, max_retries: int = 2,
                 retry_wait: float = 2.0, allow_insecure_local: bool = False) -> None:
        super().__init__(write_interval="epoch")
        if judge_url is not None:
            check_judge_url(judge_url, allow_insecure_local)  # before any generation
        self.output_dir, self.compare_with = output_dir, compare_with
        self.judge_url, self.judge_model = judge_url, judge_model
        self.api_key_env, self.timeout = api_key_env, timeout
        if references not in (None, "question_file") and not Path(references).is_file():
            raise FileNotFoundError(f"MTBenchWriter: references file {references} does not "
                                    "exist (a jsonl of reference answers, or 'question_file')")
        self.references = references
        self.max_retries, self.retry_wait = max_retries, retry_wait
        self.allow_insecure_local = allow_insecure_local

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: list[Any], batch_indices: list[Any]) -> None:
        rows = gather_rows(trainer, [row for batch in predictions for row in batch])
        if not trainer.is_global_zero:
            return  # one process writes and calls the judge
        out = output_dir(trainer, self.output_dir)
        answers = [
            {"question_id": row["target"].get("question_id"), "category":
             row["target"].get("category"), "question": (row["target"].get("turns") or [""])[0],
             "answer": row["prediction"]}
            for row in rows
        ]
        write_jsonl(out / "answers.jsonl", answers)  # first: a bad reference file loses nothing
        rank_zero_info(f"MT-Bench: {len(answers)} answers -> {out / 'answers.jsonl'}")
        rouge = None
        if self.references:
            rouge = self.rouge_l(answers, self._reference_answers(rows), out)
            write_jsonl(out / "answers.jsonl", answers)  # now with each answer's rouge_l
        if self.compare_with:
            self.judge(answers, out, rouge)

    def _reference_answers(self, rows: list[dict[str, Any]]) -> dict[Any, str]:
        if self.references == "question_file":
            return {r["target"].get("question_id"): r["target"]["text"] for r in rows
                    if r["target"].get("text")}
        return read_reference_answers(self.references)

    def rouge_l(self, answers: list[dict[str, Any]], references: dict[Any, str],
                out: Path) -> dict[str, Any]:
        """Table 3's ROUGE-L: each answer (and the ``compare_with`` run's) against its reference;
        adds ``rouge_l`` to the scored answer rows and writes ``rouge_l.json``."""
        def mean_rouge(rows: list[dict[str, Any]]) -> float | None:
            if not rows:
                return None
            result = score("rouge_l", [r["answer"] for r in rows],
                           [{"references": [references[r["question_id"]]]} for r in rows])
            for row, value in zip(rows, result.per_example, strict=True):
                row["rouge_l"] = value
            return result.value

        scored = [a for a in answers if a["question_id"] in references]
        summary: dict[str, Any] = {
            "rouge_l": mean_rouge(scored), "scored": len(scored),
            "unscored_question_ids": [a["question_id"] for a in answers
                                      if a["question_id"] not in references],
            "references": self.references,
        }
        if self.compare_with:
            other = [r for r in read_jsonl(Path(self.compare_with))
                     if r["question_id"] in references]
            summary["compare_with"] = self.compare_with
            summary["compare_with_rouge_l"] = mean_rouge(other)
        (out / "rouge_l.json").write_text(json.dumps(summary, indent=2))
        rank_zero_info(f"MT-Bench: ROUGE-L {summary['rouge_l']} on {len(scored)} answers")
        return summary

    def judge(self, answers: list[dict[str, Any]], out: Path,
              rouge: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Write pairwise judge prompts; call the judge when a URL is configured (``rouge``:
        :meth:`rouge_l`'s summary, reported next to the judge scores)."""
        other = {r["question_id"]: r["answer"] for r in read_jsonl(Path(self.compare_with))}
        prompts = [
            {"question_id": a["question_id"], "prompt": JUDGE_TEMPLATE.format(
                query=a["question"], response1=a["answer"], response2=other[a["question_id"]])}
            for a in answers if a["question_id"] in other
        ]
        write_jsonl(out / "judge_prompts.jsonl", prompts)
        if not self.judge_url:
            return None
        key = os.environ.get(self.api_key_env)
        client = JudgeClient(self.judge_url, key, timeout=self.timeout,
                             max_retries=self.max_retries, retry_wait=self.retry_wait,
                             allow_insecure_local=self.allow_insecure_local)
        reviews, pairs = [], []
        for item in prompts:
            record: dict[str, Any] = {"question_id": item["question_id"]}
            try:
                record["review"] = client.complete(self.judge_model, item["prompt"])
                record["scores"] = parse_scores(record["review"])
                if record["scores"] is None:
                    record["error"] = "no two x/10 scores found in the review"
                else:
                    pairs.append(record["scores"])
            except Exception as error:  # noqa: BLE001  (one bad request must not stop the rest)
                record["error"] = redact(f"{type(error).__name__}: {error}", key)
            reviews.append(record)
        write_jsonl(out / "judge_reviews.jsonl", reviews)
        summary = {
            "judged": len(pairs), "failed": len(reviews) - len(pairs),
            "assistant1_mean": sum(p[0] for p in pairs) / len(pairs) if pairs else None,
            "assistant2_mean": sum(p[1] for p in pairs) / len(pairs) if pairs else None,
            "compare_with": self.compare_with, "judge_model": self.judge_model,
        }
        if rouge is not None:
            summary["assistant1_rouge_l"] = rouge["rouge_l"]
            summary["assistant2_rouge_l"] = rouge.get("compare_with_rouge_l")
        (out / "judge_scores.json").write_text(json.dumps(summary, indent=2))
        return summary
