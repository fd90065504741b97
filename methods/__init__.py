"""PEFT methods as plugins: subclass :class:`PeftMethod` and implement ``install``.

``class_path: methods.Parade`` (or a short name such as ``Parade``) selects a method in a
LightningCLI config; its ``__init__`` arguments are the ``init_args``.
"""

from methods.adapter_files import load_adapter, save_pretrained
from methods.base import AdapterModule, PeftMethod
from methods.export import export_peft
from methods.from_peft import FromPeft
from methods.ia3 import IA3, PaperIA3
from methods.lora import LoRA
from methods.parade import Parade, Parade1, Parade2, Parade3, Parade4
from methods.pretrained import load_pretrained

__all__ = [
    "AdapterModule", "PeftMethod", "Parade", "Parade1", "Parade2", "Parade3", "Parade4",
    "IA3", "PaperIA3", "LoRA", "FromPeft", "export_peft", "save_pretrained", "load_pretrained",
    "load_adapter",
]
