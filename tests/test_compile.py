"""Compile readiness: every method traces without graph breaks with a static KV cache, and
``generate(..., compile=...)`` gives the eager result (issue 14).

The compiled runs use the ``aot_eager`` backend: it traces the same graphs as inductor (and
``fullgraph=True`` turns any graph break into an error) without inductor's slow code
generation on the CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from conftest import METHOD_IDS, method_zoo, perturb, tiny
from transformers import StaticCache

from methods import Parade
from parade_lightning import generate
from parade_lightning.generation import generate_batch, left_pad


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()  # compiled code of one test must not count against another's limit
    yield
    dynamo.reset()


def adapted(name: str, arch: str = "tiny-llama"):
    model, tokenizer = tiny(arch)
    method = method_zoo(arch)[name]
    method.attach(model)
    perturb(model, scale=0.3)
    return model.eval(), tokenizer, method


def breaks(fn, **kwargs) -> list[str]:
    """Graph-break reasons of tracing ``fn(**kwargs)`` (the call runs, side effects too)."""
    explanation = dynamo.explain(fn)(**kwargs)
    return [str(b.reason) for b in explanation.break_reasons] + (
        ["(unnamed break)"] * (explanation.graph_break_count - len(explanation.break_reasons)))


CASES = [("tiny-llama", name) for name in METHOD_IDS] + [
    ("tiny-gpt2", "parade"), ("tiny-gpt-neox", "parade")]  # fused QKV / FFN hosts


@pytest.mark.parametrize(("arch", "name"), CASES)
def test_prefill_and_decode_trace_without_graph_breaks(arch, name):
    """Hugging Face's inputs for a static cache (4-D masks), in a generation session: the
    root pre-hook and the forward each trace as one graph, prefill and decode alike."""
    model, _, method = adapted(name, arch)
    ids = torch.tensor([[0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]])
    mask = (ids != 0).long()
    cache = StaticCache(config=model.config, max_cache_len=12)
    with torch.no_grad(), method.generating(model, mask):
        prefill = model.prepare_inputs_for_generation(
            ids, cache=cache, attention_mask=mask, is_first_iteration=True, use_cache=True)
        assert breaks(model.__call__, **prefill) == []
        ids = torch.cat([ids, torch.tensor([[7], [8]])], dim=1)
        mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
        step = model.prepare_inputs_for_generation(
            ids, next_sequence_length=1, cache=cache, attention_mask=mask, use_cache=True)
        assert breaks(model.__call__, **step) == []
    if isinstance(method, Parade):  # teacher forcing with a prompt mask (training forward)
        prompt = torch.zeros_like(ids, dtype=torch.bool)
        prompt[:, 2:6] = True
        extra = method.forward_inputs({"prompt_mask": prompt})
        assert breaks(model.__call__, input_ids=ids, attention_mask=mask, use_cache=False,
                      **extra) == []


PROMPTS = [[5, 9, 13, 17, 21, 25, 29], [40, 41, 42], [60, 61, 62, 63, 64]]


@pytest.mark.parametrize("name", ["parade", "parade1", "lora", "ia3_paper"])
def test_compiled_generate_equals_eager(name):
    """Greedy tokens identical, logits within 1e-4 (fp32), zero graph breaks (fullgraph)."""
    model, tokenizer, _ = adapted(name)
    input_ids, mask = left_pad(PROMPTS, tokenizer.pad_token_id)
    options = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False,
               "return_dict_in_generate": True, "output_logits": True,
               "pad_token_id": tokenizer.pad_token_id}
    eager = generate_batch(model, input_ids, mask, **options)
    compiled = generate_batch(model, input_ids, mask, compile="aot_eager", **options)
    assert dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the decode really compiled
    assert torch.equal(eager.sequences, compiled.sequences)
    for a, b in zip(eager.logits, compiled.logits, strict=True):
        assert (a - b).abs().max().item() <= 1e-4
    # and through the text API, twice (the second call reuses the compiled graph)
    texts = generate(model, tokenizer, PROMPTS, max_new_tokens=4, min_new_tokens=4)
    for _ in range(2):
        assert generate(model, tokenizer, PROMPTS, max_new_tokens=4, min_new_tokens=4,
                        compile="aot_eager") == texts


def test_generation_session_checks_the_prompts_once_and_cleans_up():
    model, tokenizer, method = adapted("parade")
    input_ids, mask = left_pad(PROMPTS, tokenizer.pad_token_id)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] have no prompt token"):
        generate_batch(model, input_ids, mask, max_new_tokens=2)
    assert model.parade_state.session_mask is None  # a failed session leaves nothing behind


def test_multitenant_and_lit_module_compile_options(tmp_path):
    """``MultiTenantModel(compile=...)`` and ``PeftLitModule(compile_generation=...)`` decode
    compiled and give the eager texts (a mixed-tenant batch, then a new tenant mix)."""
    from methods.adapter_files import save_adapter
    from parade_lightning import PeftLitModule
    from parade_lightning.multitenant import MultiTenantModel

    texts = {}
    for compile in (False, "aot_eager"):
        served = MultiTenantModel.from_backbone("tiny-llama", compile=compile)
        for i in range(2):
            model, _, _ = adapted("parade")
            perturb(model, scale=0.5, seed=10 + i)
            served.add_tenant(f"t{i}", save_adapter(model, tmp_path / f"t{i}", "tiny-llama"))
        texts[compile] = [served.generate(PROMPTS, tenants=mix, max_new_tokens=4,
                                          min_new_tokens=4)
                          for mix in (["t0", "t1", "t0"], ["t1", "t1", "t0"])]
    assert texts[False] == texts["aot_eager"] and texts[False][0] != texts[False][1]
    module = PeftLitModule("tiny-llama", Parade(), compile_generation="aot_eager")
    perturb(module.model, scale=0.3)
    compiled = module.generate(PROMPTS, num_beams=1, max_new_tokens=4, min_new_tokens=4)
    assert compiled == module.generate(PROMPTS, num_beams=1, max_new_tokens=4,
                                       min_new_tokens=4, compile=False)


@pytest.mark.parametrize(("value", "parsed"), [("true", True), ("aot_eager", "aot_eager")])
def test_cli_takes_compile_generation(tmp_path, capsys, value, parsed):
    """``parade test/predict --model.compile_generation ...`` reaches PeftLitModule."""
    import yaml
    from test_cli import cli_args

    from parade_lightning.cli import build_cli

    with pytest.raises(SystemExit):
        build_cli(["predict", *cli_args(tmp_path), "--model.compile_generation", value,
                   "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model"]["compile_generation"] == parsed
