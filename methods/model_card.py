"""The short ``README.md`` model card of an adapter folder (:func:`methods.save_pretrained`).

Written from the folder's ``adapter_config.json`` only, so the card never says more than the
folder records: method and arguments, backbone, trainable-parameter budget, and, when the
writer knew them (``parade export`` reads them from the run), task, data, metrics, training.
"""

from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value, sort_keys=True)}`"
    return str(value)


def _table(rows: dict[str, Any], what: str) -> list[str]:
    return [f"| {what} | value |", "|---|---|",
            *(f"| {k} | {_value(v)} |" for k, v in rows.items())]


def render_card(config: dict[str, Any]) -> str:
    """Markdown for one adapter folder's ``adapter_config.json`` (as a mapping)."""
    method = config["method"]
    name = method["class_path"].rsplit(".", 1)[-1]
    card = config.get("card") or {}
    budget = config.get("budget") or {}
    backbone = f"`{config['backbone']}`" if config.get("backbone") else "an unnamed backbone"
    version = config.get("library", {}).get("parade-lightning", "")
    lines = [f"# {name} adapter" + (f" for {card['task']}" if card.get("task") else ""), "",
             f"A parameter-efficient adapter for {backbone} ({config.get('model_type')}), "
             f"written by parade-lightning {version}.", "",
             "## Method", "", f"`{method['class_path']}`", "",
             *_table(method["init_args"], "argument"), ""]
    if budget:
        lines += ["## Budget", "", *_table({
            "trainable parameters": f"{budget['trainable']:,}",
            "backbone + adapter parameters": f"{budget['total']:,}",
            "trainable %": f"{budget['percent']:.4f}"}, "count"), ""]
    for title, key in (("Data", "data"), ("Metrics", "metrics"), ("Training", "training")):
        if card.get(key):
            lines += [f"## {title}", "", *_table(card[key], key.rstrip("s")), ""]
    lines += ["## Loading", "", "```python",
              "from methods.pretrained import load_pretrained",
              "model = load_pretrained(\"path/to/this/folder\")  # loads the recorded backbone",
              "```", "",
              f"The backbone's config hash is `{config.get('backbone_config_hash')}`; loading "
              "onto another backbone is refused with the fields that differ.", ""]
    return "\n".join(lines)
