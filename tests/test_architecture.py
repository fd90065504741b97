"""The house rules of docs/design.md, checked: one import direction between the four
packages, no import cycles between modules, no file over 400 lines, no lazy-import tricks; a
user's method plugs into the batch-input hook, the resolver and budget matching unchanged."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from methods import AdapterModule, PeftMethod
from methods.architectures import find_sites
from methods.registry import method_class, method_from_config
from parade_lightning import PeftLitModule
from parade_lightning.sweep import budget_match

ROOT = Path(__file__).resolve().parents[1]
#: Lower layers never import higher ones (docs/design.md, "Layers").
LAYERS = ("methods", "datamodules", "parade_lightning", "callbacks")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``path`` imports, anywhere in the file (functions and
    ``TYPE_CHECKING`` blocks included); ``from pkg import sub`` counts as ``pkg.sub``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in LAYERS}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_layers_import_downward_only() -> None:
    rank = {package: i for i, package in enumerate(LAYERS)}
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items() for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    ]
    assert not upward, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + \
        "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if target == node:
                continue
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target in graph and target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_level_getattr_and_no_file_over_400_lines() -> None:
    files = [p for folder in (*LAYERS, "tests", "benchmarks")
             for p in (ROOT / folder).rglob("*.py")]
    long = [f"{p.relative_to(ROOT)}: {n}" for p in files
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"files over {MAX_LINES} lines: {long}"
    lazy = [str(p.relative_to(ROOT)) for p in _modules().values()
            if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                   for n in ast.parse(p.read_text()).body)]
    assert not lazy, f"module-level __getattr__ (lazy imports) in {lazy}"


def test_file_names_say_one_thing() -> None:
    """No two product files share a name with different meanings (``__init__`` aside)."""
    seen: dict[str, list[str]] = {}
    for path in _modules().values():
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in seen.items() if len(p) > 1} == {}


# ---------------------------------------------------------------- a user's own method


class TaskScale(PeftMethod):
    """A user's method: one learned vector per task id scales the query projection, so it
    needs a per-example input (``task_id``) from the batch."""

    batch_keys = ("task_id",)
    size_knob = "num_tasks"

    def __init__(self, num_tasks: int = 2) -> None:
        self.num_tasks = num_tasks

    def install(self, model: nn.Module) -> None:
        for site in find_sites(model, ("q",)):
            site.module.add_module("task_scale", _TaskVectors(site, self))

    def begin_forward(self, model, kwargs, inputs) -> None:
        self.current_task = inputs["task_id"]  # what the hooks read in this forward


class _TaskVectors(AdapterModule):
    def __init__(self, site, method: TaskScale) -> None:
        super().__init__(site.layer)
        self.vectors = nn.Parameter(torch.ones(method.num_tasks, site.out_features))
        object.__setattr__(self, "_method", method)  # not a submodule
        self.hook_output(site.module, self._scale)

    def _scale(self, module, args, out):
        task = self._method.current_task
        return out if task is None else out * self.vectors[task][:, None, :]


def test_a_users_method_gets_its_batch_input_through_the_hook() -> None:
    module = PeftLitModule(backbone="tiny-llama", method=TaskScale(num_tasks=3))
    with torch.no_grad():
        for _, p in module.method.named_adapter_parameters(module.model):
            p[1].fill_(2.0)  # task 1 doubles the queries; tasks 0 and 2 leave them alone
    ids = torch.randint(3, 200, (1, 8))
    batch = {"input_ids": ids.repeat(3, 1), "attention_mask": torch.ones(3, 8, dtype=torch.long),
             "task_id": torch.tensor([0, 1, 2])}
    module.eval()
    logits = module(batch).logits
    assert torch.equal(logits[0], logits[2])
    assert not torch.allclose(logits[0], logits[1])
    with pytest.raises(KeyError, match="task_id"):
        module({k: v for k, v in batch.items() if k != "task_id"})


def test_the_one_resolver_and_budget_matching_know_a_users_method() -> None:
    assert method_class("TaskScale") is TaskScale  # short name of an imported subclass
    assert method_class("methods.Parade").__name__ == "Parade"
    assert type(method_from_config({"class_path": "TaskScale", "init_args": {"num_tasks": 4}}))\
        is TaskScale
    per_task = budget_match.count_parameters("tiny-llama", "TaskScale", {"num_tasks": 1})
    match = budget_match.solve("tiny-llama", "TaskScale", {}, target=5 * per_task)
    assert (match.knob, match.value, match.count) == ("num_tasks", 5, 5 * per_task)
    with pytest.raises(ValueError, match="searched|imported from"):
        method_class("methods.NoSuchMethod")
    with pytest.raises(ValueError, match="unknown method 'Nope'"):
        method_class("Nope")
