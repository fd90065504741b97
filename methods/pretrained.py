"""Loading adapter folders (or ``parade fit`` checkpoints) onto a backbone.

    from methods import Parade
    from methods.pretrained import load_pretrained

    Parade.save_pretrained(model, "adapters/rte", backbone="smollm2-135m")  # any method
    model = load_pretrained("adapters/rte")            # loads smollm2-135m, attaches, loads
    model = load_pretrained("adapters/rte", my_model)  # onto a backbone already loaded
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from methods.adapter_files import AdapterFile, check_backbone, load_adapter
from methods.backbones import load_backbone
from methods.registry import method_from_config


def load_pretrained(source: str | Path | AdapterFile, model: nn.Module | None = None,
                    dtype: str = "float32", backbone: str | None = None) -> nn.Module:
    """Attach the adapter's method to a backbone and load its weights.

    Args:
        source: an adapter folder (either format version), a ``.ckpt`` or a loaded file.
        model: the bare backbone; ``None`` loads the recorded one (or ``backbone``).
        dtype: dtype of a backbone loaded here.
        backbone: name or path of the backbone to load instead of the recorded one (a moved
            local copy); the recorded architecture is still checked.

    Returns:
        The backbone with the method attached (``model.peft_method``) and the weights loaded.

    Raises:
        ValueError: the backbone's architecture differs from the recorded one (every differing
            field is named), or the weights do not fit the method.
    """
    adapter = source if isinstance(source, AdapterFile) else load_adapter(source)
    if model is None:
        name = backbone or adapter.backbone
        if not name:
            raise ValueError(f"adapter {adapter.source} records no backbone; pass the model "
                             "(or backbone=) to load it onto")
        model, _ = load_backbone(name, dtype=dtype)
    check_backbone(adapter, model, backbone)
    method = method_from_config(adapter.method)
    method.attach(model)
    method.load_adapter_state_dict(model, adapter.state)
    return model
