"""GSM8K final-answer accuracy (paper appendix B.7: "the correctness of the final answers").

GSM8K solutions end with ``#### <number>``; a fine-tuned model learns to end its own
reasoning the same way, so that marker is trusted first and the last number in the text is
the fallback (the "flexible" reading that also credits a model that never learned it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from datamodules.metrics.core import ExampleScore, target_field

_ANSWER_MARKER = "####"
# A number: optional sign and "$", thousands groups ("1,000") or plain digits, optional
# decimals. A "-" right after a word character or ")" is a minus/range ("5-3", "3-5
# apples"), not a sign. "18." does not swallow the sentence's full stop, and "5,7" (a list)
# stays two numbers because a thousands group needs exactly three digits and no fourth.
_NUMBER_RE = re.compile(
    r"(?:(?<![\w)\]])-)?(?:\$\s?)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
    r"|(?:(?<![\w)\]])-)?\$?\.\d+"
)


def _clean_number(raw: str) -> str:
    """Drop ``$``, thousands commas, spaces and a trailing full stop: "-$1,000." -> "-1000"."""
    return re.sub(r"[$,\s]", "", raw).rstrip(".")


def extract_gsm8k_number(text: str) -> str | None:
    """Extract the final numeric answer from a GSM8K-style solution.

    The first number after the last ``####`` if there is one, else the last number in the
    whole text. Commas, ``$`` and a trailing ``.`` are removed.

    Args:
        text: a generated (or gold) solution.

    Returns:
        The number as a plain string (e.g. ``"1000"``, ``"-3"``, ``"18.5"``), or ``None``
        when the text has no number.

    Examples:
        >>> extract_gsm8k_number("... so she has 5 + 2 = 7\\n#### 1,000")
        '1000'
        >>> extract_gsm8k_number("The answer is $18.")
        '18'
    """
    if _ANSWER_MARKER in text:
        match = _NUMBER_RE.search(text.rsplit(_ANSWER_MARKER, 1)[1])
        if match is not None:
            return _clean_number(match.group())
    numbers = _NUMBER_RE.findall(text)
    return _clean_number(numbers[-1]) if numbers else None


def parse_number(value: str | int | float) -> Decimal | None:
    """Parse a gold or extracted answer into a ``Decimal`` ("1,000" -> 1000); ``None`` if not.

    ``Decimal`` rather than ``float`` so that equality is exact yet "72.0" == "72".
    """
    try:
        number = Decimal(_clean_number(str(value)))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def gsm8k_accuracy_example(prediction: str, target: Mapping[str, Any]) -> ExampleScore:
    """1.0 iff the generation's final number equals the gold answer numerically.

    Args:
        prediction: the generated solution.
        target: needs ``"answer_number"`` (e.g. ``"72"``, ``"-3"``, ``"1,000"``); without it
            the number is extracted from ``"text"``, the gold solution ending in ``#### N``.

    Raises:
        ValueError: if the gold answer is not a number (a data bug).
    """
    if "answer_number" in target:
        gold = parse_number(target["answer_number"])
    else:
        gold_text = extract_gsm8k_number(str(target_field(target, "answer_number")))
        gold = None if gold_text is None else parse_number(gold_text)
    if gold is None:
        raise ValueError(f"GSM8K target has no numeric answer: {target!r:.200}")
    extracted = extract_gsm8k_number(prediction)
    predicted = None if extracted is None else parse_number(extracted)
    return ExampleScore(float(predicted is not None and predicted == gold))
