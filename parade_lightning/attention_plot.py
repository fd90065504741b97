"""Drawing pooler attention maps as heat maps (the only module that uses matplotlib here).

One image per prompt: prompt tokens along the x axis, one row per (layer, capsule) along the y
axis, colour = the pooler weight ``n_{j,k}`` (:mod:`parade_lightning.pooler_maps`). The image
is written as PNG and/or returned as an ``(H, W, 3)`` uint8 array for TensorBoard's
``add_image(..., dataformats="HWC")``. matplotlib is the optional ``plots`` extra (imported
when drawing, with the Agg backend: files only, no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parade_lightning.pooler_maps import PoolerMaps


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("drawing pooler attention maps needs matplotlib: "
                          "`pip install 'parade-lightning[plots]'`") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(token: str, width: int = 12) -> str:
    text = token.replace("\n", "\\n").replace("Ġ", "·").replace("▁", "·")
    return text if len(text) <= width else text[: width - 1] + "…"


def draw_pooler_map(maps: PoolerMaps, row: int = 0, path: str | Path | None = None,
                    max_tokens: int | None = None, tail: bool = False,
                    title: str | None = None) -> np.ndarray:
    """Draw row ``row`` of ``maps``; write a PNG to ``path`` when given; return the RGB array.

    Args:
        maps: pooler weights (:func:`parade_lightning.pooler_maps.pooler_attention_maps`).
        row: which prompt of the batch.
        path: PNG file to write (folders are created).
        max_tokens: draw only this many prompt tokens (appendix I shows the first 64); the
            weights are not renormalised.
        tail: with ``max_tokens``, draw the last tokens instead of the first (the query's end
            rather than a chat template's fixed system prompt).
        title: figure title (default: pooler, layers and token count).
    """
    plt = _pyplot()
    weights = maps.row(row)  # (L, T, K)
    tokens = maps.tokens[row]
    total = len(tokens)
    if max_tokens is not None and max_tokens < total:
        keep = slice(total - max_tokens, total) if tail else slice(0, max_tokens)
        weights, tokens = weights[:, keep], tokens[keep]
    num_layers, num_tokens, num_caps = weights.shape
    grid = weights.permute(0, 2, 1).reshape(num_layers * num_caps, num_tokens).numpy()
    labels = [f"layer {layer} · c{k + 1}" for layer in maps.layers for k in range(num_caps)]
    fig, ax = plt.subplots(figsize=(min(2.0 + 0.28 * num_tokens, 40.0),
                                    1.4 + 0.3 * len(labels)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
    ax.set_xticks(range(num_tokens), [_label(t) for t in tokens], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for boundary in range(1, num_layers):
        ax.axhline(boundary * num_caps - 0.5, color="white", linewidth=1.0)
    shown = (f"{'last' if tail else 'first'} {num_tokens} of {total}" if num_tokens < total
             else f"{total}")
    ax.set_title(title or f"PARADE pooler weights ({maps.pooler}); {shown} prompt tokens",
                 fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return rgb
