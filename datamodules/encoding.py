"""Raw rows -> tokenised examples: templating, tokenising, truncation and bad-row accounting.

Truncation rule: when prompt + response + EOS exceed ``max_length``, only the task's
``truncate_field`` (the long context: passage, context, premise, table...) is shortened, from its
end (cut at a token's character offset, backed off to a word boundary, then re-rendered and
re-checked). The question, the template text after the context, the chat-style suffix and the
response are never cut. A row whose response alone does not fit, or that does not fit even with
the context emptied (or that has no truncatable field), is a bad row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datamodules.errors import AllRowsDroppedError, BadRowError, RowProblem
from datamodules.task_spec import RawRow, TaskSpec
from datamodules.templates import eos_id, render_prompt

_CHUNK = 1024  # rows tokenised per batch call


@dataclass(frozen=True)
class EncodeOptions:
    """How rows become token ids: what the datamodule's arguments say, nothing else."""

    tokenizer: Any
    chat_style: str
    max_length: int
    on_bad_row: str = "raise"


@dataclass
class SplitStats:
    """Counts for one processed split (kept as a plain dict in ``dm.stats[split]``)."""

    split_rows: int = 0
    rows: int = 0
    examples: int = 0
    truncated: int = 0
    dropped: int = 0
    dropped_by_field: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return {
            "split_rows": self.split_rows,
            "rows": self.rows,
            "examples": self.examples,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "dropped_by_field": dict(self.dropped_by_field),
        }


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start : start + _CHUNK]
        out.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return out


def _cut(text: str, end: int) -> str:
    """``text[:end]``, backed off to the last whitespace when that cuts a word (<= 40 chars)."""
    kept = text[:end]
    if end < len(text) and not text[end].isspace():
        space = max(kept.rfind(" "), kept.rfind("\n"))
        if space > 0 and end - space <= 40:
            kept = kept[:space]
    return kept.rstrip()


def fit_prompt(
    task: TaskSpec, options: EncodeOptions, fields: dict[str, str], prompt_ids: list[int],
    n_response: int,
) -> tuple[list[int], bool]:
    """Make ``prompt_ids + response`` fit ``max_length`` by shortening ``task.truncate_field``.

    Returns:
        ``(prompt_ids, truncated)``.

    Raises:
        RowProblem: the response alone is too long, or the prompt cannot be shortened enough.
    """
    max_length = options.max_length
    excess = len(prompt_ids) + n_response - max_length
    if excess <= 0:
        return prompt_ids, False
    if n_response >= max_length:
        raise RowProblem(
            task.response_source,
            f"the response has {n_response} tokens (with EOS), max_length is {max_length}",
        )
    name = task.truncate_field
    others = ", ".join(f for f in fields if f != name) or "prompt"
    if name is None or not fields.get(name):
        raise RowProblem(
            others,
            f"prompt ({len(prompt_ids)} tokens) + response ({n_response}) exceed max_length "
            f"{max_length} and there is no (non-empty) context field to shorten",
        )
    tok, text = options.tokenizer, fields[name]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    keep = len(offsets) - excess
    for _ in range(8):
        if keep <= 0:
            break
        cut = fields | {name: _cut(text, offsets[keep - 1][1])}
        prompt_ids = _tokenize(tok, [render_prompt(tok, options.chat_style, task.query(cut))])[0]
        excess = len(prompt_ids) + n_response - max_length
        if excess <= 0:
            return prompt_ids, True
        keep -= excess
    raise RowProblem(
        others,
        f"does not fit max_length {max_length} with {name!r} shortened as far as it goes "
        f"(response {n_response} tokens)",
    )


def encode_rows(
    task: TaskSpec, options: EncodeOptions, split: str, rows: list[RawRow], split_rows: int
) -> tuple[list[dict[str, Any]], SplitStats]:
    """Turn raw rows into examples (``prompt_ids``, ``response_ids``, ``targets``, ``index``...).

    Args:
        task: the task's declarations and row hooks (template, fields, verbaliser…).
        options: tokenizer, chat style, length limit and bad-row policy.
        split: derived split name, for messages.
        rows: the rows of the split (after grouping and subsetting).
        split_rows: size of the full split, for the stats.

    Returns:
        ``(examples, stats)``; examples are re-indexed ``0..n-1`` after dropped rows.
    """
    stats = SplitStats(split_rows=split_rows, rows=len(rows))
    policy = options.on_bad_row

    first: list[str] = []  # the first dropped row, for the error when every row is dropped

    def bad(raw: RawRow, problem: RowProblem) -> None:
        if policy != "skip":
            raise BadRowError(task.task, split, raw.source, raw.row, problem.field, problem.reason)
        if not first:
            first.append(f"source {raw.source!r} row {raw.row}, field {problem.field!r}: "
                         f"{problem.reason}")
        stats.dropped += 1
        stats.dropped_by_field[problem.field] += 1

    prepared: list[tuple[RawRow, dict[str, str], str, dict[str, Any]]] = []
    for raw in rows:
        try:
            fields = task.prompt_fields(raw.data)
            response = task.response(raw.data)
            prepared.append((raw, fields, response, task.targets(raw.data, response)))
        except RowProblem as problem:
            bad(raw, problem)

    tok, style = options.tokenizer, options.chat_style
    prompts = _tokenize(tok, [render_prompt(tok, style, task.query(p[1])) for p in prepared])
    responses = _tokenize(tok, [p[2] for p in prepared]) if task.has_response else []
    eos = eos_id(tok)
    examples: list[dict[str, Any]] = []
    for i, (raw, fields, _, targets) in enumerate(prepared):
        response_ids = responses[i] + [eos] if task.has_response else []
        try:
            prompt_ids, truncated = fit_prompt(task, options, fields, prompts[i],
                                               len(response_ids))
        except RowProblem as problem:
            bad(raw, problem)
            continue
        stats.truncated += truncated
        examples.append(
            {
                "index": len(examples),
                "source": raw.source,
                "row": raw.row,
                "prompt_ids": prompt_ids,
                "response_ids": response_ids,
                "targets": targets,
                "truncated": truncated,
            }
        )
    stats.examples = len(examples)
    if rows and not examples:
        raise AllRowsDroppedError(
            f"{task.task}: on_bad_row='skip' dropped all {len(rows)} rows of split {split!r} "
            f"(by field: {dict(stats.dropped_by_field)}; first: {first[0]}), leaving nothing to "
            "train or evaluate on. Fix the data (on_bad_row='raise' stops at the first bad row)."
        )
    return examples, stats
