"""Dataset wrapper and the collate function that builds the batch contract.

Every batch is a dict:

* ``input_ids`` LongTensor (B, T): prompt + response + EOS (``prompt_only``: prompt only);
* ``attention_mask`` LongTensor (B, T): 1 on tokens, 0 on padding;
* ``labels`` LongTensor (B, T): response + EOS ids, -100 on prompt and padding (all -100 when
  ``prompt_only``);
* ``prompt_mask`` BoolTensor (B, T): True exactly on prompt tokens;
* ``prompt_ids`` list[list[int]]: unpadded prompt ids (ready for ``generate``);
* ``targets`` list[dict]: what the task metric needs (always has ``"text"``);
* ``index`` list[int]: position of the example in its split.

Padding is dynamic (to the longest sequence of the batch) on the configured side.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100


class ExampleDataset(Dataset):
    """A list of processed examples as a map-style dataset."""

    def __init__(self, examples: list[dict[str, Any]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.examples[i]


class Collator:
    """Pad a list of examples into the batch contract (picklable for worker processes).

    Args:
        pad_id: id written on padding positions of ``input_ids``.
        padding_side: ``right`` or ``left``.
        prompt_only: drop the response (for ``predict``).
    """

    def __init__(
        self, pad_id: int, padding_side: Literal["right", "left"] = "right",
        prompt_only: bool = False,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_id = pad_id
        self.padding_side = padding_side
        self.prompt_only = prompt_only

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Build the batch dict from examples."""
        responses = [[] if self.prompt_only else e["response_ids"] for e in examples]
        lengths = [len(e["prompt_ids"]) + len(r) for e, r in zip(examples, responses, strict=True)]
        width = max(lengths)
        batch = len(examples)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        prompt_mask = torch.zeros((batch, width), dtype=torch.bool)
        for i, (example, response, length) in enumerate(
            zip(examples, responses, lengths, strict=True)
        ):
            prompt = example["prompt_ids"]
            start = 0 if self.padding_side == "right" else width - length
            mid, end = start + len(prompt), start + length
            input_ids[i, start:mid] = torch.tensor(prompt, dtype=torch.long)
            if response:
                input_ids[i, mid:end] = torch.tensor(response, dtype=torch.long)
                labels[i, mid:end] = input_ids[i, mid:end]
            attention[i, start:end] = 1
            prompt_mask[i, start:mid] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "prompt_mask": prompt_mask,
            "prompt_ids": [list(e["prompt_ids"]) for e in examples],
            "targets": [e["targets"] for e in examples],
            "index": [int(e["index"]) for e in examples],
        }
