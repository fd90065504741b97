"""Chat styles: how a task query and its response become one token sequence.

The task templates of appendix C give the *query* (user input) and the *response*. A chat style
wraps them:

``llama2`` (default; the paper's system template, appendix C)::

    <bos>[INST] <<SYS>>
    You are a helpful, respectful and honest assistant.
    <</SYS>>

    <query>[/INST]<response><eos>

  ``<s>``/``</s>`` of the paper are rendered as the tokenizer's own BOS/EOS tokens (for
  SmolLM2 that is ``<|im_start|>`` / ``<|im_end|>``; a tokenizer without BOS gets none). No
  spaces are added around ``[/INST]``: the paper's template has none.

``tokenizer``
  the backbone's own chat template (``apply_chat_template`` with one user turn and
  ``add_generation_prompt=True``), then the response and EOS.

``plain``
  ``<query>\\n<response><eos>`` (no BOS, no system prompt).

The prompt always ends where the response starts (after ``[/INST]`` / the assistant header), so
``prompt_ids`` can be fed to ``generate`` unchanged. Prompt and response are tokenised separately
(``add_special_tokens=False``) and concatenated, so the prompt ids are an exact prefix of the
training ids.
"""

from __future__ import annotations

import string
from typing import Literal

ChatStyle = Literal["llama2", "tokenizer", "plain"]
CHAT_STYLES: tuple[str, ...] = ("llama2", "tokenizer", "plain")

LLAMA2_SYSTEM = "You are a helpful, respectful and honest assistant."
LLAMA2_PREFIX = f"[INST] <<SYS>>\n{LLAMA2_SYSTEM}\n<</SYS>>\n\n"
LLAMA2_SUFFIX = "[/INST]"


def placeholders(template: str) -> list[str]:
    """Names of the ``{field}`` placeholders of a ``str.format`` template, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def render_prompt(tokenizer, chat_style: ChatStyle, query: str) -> str:
    """Render the prompt text (everything before the response) in a chat style.

    Args:
        tokenizer: a Hugging Face tokenizer (its BOS token and chat template are used).
        chat_style: ``llama2``, ``tokenizer`` or ``plain``.
        query: the task prompt (appendix C template filled with one row).

    Returns:
        The prompt text, special tokens written out as text (tokenise it with
        ``add_special_tokens=False``).
    """
    if chat_style == "llama2":
        bos = tokenizer.bos_token or ""
        return f"{bos}{LLAMA2_PREFIX}{query}{LLAMA2_SUFFIX}"
    if chat_style == "tokenizer":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "chat_style='tokenizer' needs a tokenizer with a chat template; this one has "
                "none. Use chat_style='llama2' or 'plain'."
            )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": query}], tokenize=False, add_generation_prompt=True
        )
        return str(text)
    if chat_style == "plain":
        return f"{query}\n"
    raise ValueError(f"unknown chat_style {chat_style!r}; choose one of {CHAT_STYLES}")


def eos_id(tokenizer) -> int:
    """The EOS id appended to every response (error if the tokenizer has none)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; responses must end with one")
    return int(tokenizer.eos_token_id)


def pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's pad token, else its EOS."""
    pid = tokenizer.pad_token_id
    return int(pid) if pid is not None else eos_id(tokenizer)
