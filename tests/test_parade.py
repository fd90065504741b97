"""PARADE's math (eqs. 4-10), its masking, and prefill/decode consistency."""

from __future__ import annotations

import pytest
import torch
from conftest import ARCHS, perturb, run, tiny, toy_batch

from methods import IA3, Parade, Parade1, Parade2, Parade3, Parade4
from methods.parade import VectorGenerator
from methods.poolers import CapsulePooler, LastTokenPooler, RoutingPooler, squash
from parade_lightning import generate


def test_capsule_pooler_hand_computed():
    """T=3 tokens of width r=2, K=2 capsules of width 1; token 2 is not a prompt token."""
    pooler = CapsulePooler(rank=2, num_capsules=2)
    with torch.no_grad():
        pooler.weight.copy_(torch.tensor([[[1.0], [0.5]], [[0.0], [-1.0]]]))  # W_k: (K, r, r/K)
        pooler.query.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))  # v_k
    h = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    # capsule 1: m_{j→1} = [1, 1] on the prompt, so s = 1 and c = 1/(1+1) = 0.5 whatever n is.
    # capsule 2: m_{j→2} = [0, -2]; logits [0, 1] -> n = [0.2689, 0.7311], s = -1.4621,
    # c = -0.6813; refined logits [0, 1 + 1.3626] -> n = [0.0860, 0.9140], s = -1.8281,
    # c = s·|s|/(1+s²) = -0.76964 (worked by hand, checked with a scalar Python loop).
    out = pooler(h, mask)
    assert torch.allclose(out, torch.tensor([[0.5, -0.7696426189159626]]), atol=1e-6)


def test_squash_is_safe_at_zero_and_matches_formula():
    s = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    out = squash(s)
    assert torch.allclose(out[1], torch.tensor([3.0, 4.0]) * (25 / 26) / 5)
    assert torch.equal(out[0], torch.zeros(2))
    out.sum().backward()
    assert torch.isfinite(s.grad).all()


def test_routing_pooler_one_iteration_is_uniform_coupling():
    pooler = RoutingPooler(rank=4, num_capsules=2)
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    pred = torch.einsum("btr,krc->btkc", h, pooler.weight)
    s = (pred * mask[:, :, None, None]).sum(1) / 2  # coupling 1/K on every prompt token
    assert torch.allclose(pooler(h, mask), squash(s).flatten(1), atol=1e-6)


def test_last_token_pooler_left_and_right_padding():
    h = torch.arange(2 * 4 * 2, dtype=torch.float).reshape(2, 4, 2)
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    out = LastTokenPooler(rank=2)(h, mask)
    assert torch.equal(out, torch.stack([h[0, 2], h[1, 3]]))


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e4])
def test_capsule_poolers_are_bounded_and_the_last_token_is_not(scale):
    """Squashing (eq. 8) keeps each capsule's norm below 1, so the capsule and routing poolers
    give ``‖Pooler(h')‖ < √K`` however large the prompt's hidden states are; PARADE-1's last
    token passes ``h'`` through unbounded. This is the difference behind PARADE-1's divergence
    at the quality study's rates (docs/results/quality/README.md, "Ablation")."""
    torch.manual_seed(0)
    h = scale * torch.randn(3, 6, 12)
    mask = torch.ones(3, 6, dtype=torch.bool)
    for pooler in (CapsulePooler(rank=12, num_capsules=4), RoutingPooler(rank=12, num_capsules=4)):
        out = pooler(h, mask)
        capsule_norms = out.view(3, 4, 3).norm(dim=-1)
        assert (capsule_norms < 1).all() and (out.norm(dim=-1) < 2).all()
    last = LastTokenPooler(rank=12)(h, mask)
    assert torch.equal(last, h[:, -1])


def test_generator_init_gives_ones():
    gen = VectorGenerator(16, 12, 40, "capsule", 4, 0.02)
    out = gen(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool))
    assert torch.equal(out, torch.ones(2, 40))
    std = gen.down.weight.std().item()
    assert 0.015 < std < 0.025 and gen.down.weight.abs().max() <= 0.02 * 3**0.5


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_up_projection_equals_ia3_with_the_bias(arch):
    """W_up = 0, b_up = b: PARADE is (IA)³ on Q, V, Up outputs with vectors b (eq. 6)."""
    model, _ = tiny(arch)
    Parade().attach(model)
    ia3, _ = tiny(arch)
    ia3_method = IA3(targets=("q", "v", "u"), feedforward=())
    ia3_method.attach(ia3)
    layers = Parade.layers(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in layers:
            bias = layer.generator.up.bias
            bias.copy_(0.5 + torch.rand(bias.shape, generator=g))
        for _, adapter in ia3_method.adapters(ia3):
            layer = layers[adapter.layer]
            bias = dict(zip(layer.roles, layer.generator.up.bias.split(layer.widths), strict=True))
            for role in adapter.roles:
                adapter.l[role].copy_(bias[role])
    ids, attention, prompt = toy_batch()
    ours = run(model, ids, attention, prompt).logits
    theirs = ia3(input_ids=ids, attention_mask=attention).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", [Parade, Parade1, Parade2])
def test_padding_and_response_tokens_never_change_the_vectors(arch, variant):
    model, _ = tiny(arch)
    variant().attach(model)
    perturb(model)
    ids, attention, prompt = toy_batch()
    run(model, ids, attention, prompt)
    before = [layer.last_vectors.clone() for layer in Parade.layers(model)]
    changed = ids.clone()
    changed[~prompt] = (changed[~prompt] + 7) % 250  # every padding and response token
    run(model, changed, attention, prompt)
    for old, layer in zip(before, Parade.layers(model), strict=True):
        assert torch.equal(old, layer.last_vectors)
    changed[0, 5] += 1  # a prompt token: the vectors must move
    run(model, changed, attention, prompt)
    assert not torch.equal(before[-1], Parade.layers(model)[-1].last_vectors)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", [Parade, Parade2, Parade3, Parade4])
def test_gradients_reach_every_generator_parameter(arch, variant):
    model, _ = tiny(arch)
    no_gate = variant is Parade3 and arch != "tiny-llama"
    targets = {"targets": ("q", "k", "v", "u")} if no_gate else {}
    method = variant(**targets)
    method.attach(model)
    perturb(model, scale=0.1)  # W_up = 0 at init blocks the gradient to W_down and the pooler
    model.train()
    ids, attention, prompt = toy_batch()
    labels = ids.masked_fill(prompt | (attention == 0), -100)
    run(model, ids, attention, prompt, labels=labels).loss.backward()
    for name, p in method.named_adapter_parameters(model):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_training_forward_without_prompt_mask_is_an_error():
    model, _ = tiny("tiny-llama")
    Parade().attach(model)
    model.train()
    ids, attention, _ = toy_batch()
    with pytest.raises(ValueError, match="prompt_mask"):
        model(input_ids=ids, attention_mask=attention)


@pytest.mark.parametrize("variant", [Parade, Parade1, Parade2])
def test_a_row_without_prompt_tokens_is_named(variant):
    model, _ = tiny("tiny-llama")
    variant().attach(model)
    ids, attention, prompt = toy_batch()
    prompt[1] = False
    with pytest.raises(ValueError, match=r"rows \[1\] have no prompt token"):
        run(model, ids, attention, prompt)
    attention[2] = 0  # inference without a prompt mask pools over the attended tokens
    with pytest.raises(ValueError, match=r"rows \[2\] have no prompt token"), torch.no_grad():
        model.eval()(input_ids=ids, attention_mask=attention)


# ------------------------------------------------------------------ prefill / decode consistency

PROMPTS = [[5, 9, 13, 17, 21, 25, 29], [40, 41, 42], [60, 61, 62, 63, 64]]
RESPONSES = [[100, 101, 102], [110, 111, 112, 113, 114], [120, 121]]


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def teacher_forced(model, rows, side: str, pad: int = 0) -> list[torch.Tensor]:
    """Logits predicting each response token, with the whole pair in one forward."""
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros_like(ids)
    prompt = torch.zeros_like(ids, dtype=torch.bool)
    starts = []
    for i, (p, r) in enumerate(rows):
        start = 0 if side == "right" else width - len(p) - len(r)
        ids[i, start : start + len(p) + len(r)] = torch.tensor(p + r)
        mask[i, start : start + len(p) + len(r)] = 1
        prompt[i, start : start + len(p)] = True
        starts.append(start)
    logits = run(model, ids, mask, prompt, position_ids=_positions(mask)).logits
    return [
        logits[i, s + len(p) - 1 : s + len(p) - 1 + len(r)]
        for i, ((p, r), s) in enumerate(zip(rows, starts, strict=True))
    ]


def cached_decode(model, rows, pad: int = 0) -> list[torch.Tensor]:
    """Left-padded prefill of the prompts, then the responses fed one token per step."""
    width = max(len(p) for p, _ in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros_like(ids)
    for i, (p, _) in enumerate(rows):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True)
    cache, steps = out.cache, [out.logits[:, -1]]
    for t in range(max(len(r) for _, r in rows) - 1):
        tok = torch.tensor([[r[t] if t < len(r) else pad] for _, r in rows])
        live = torch.tensor([[1 if t < len(r) else 0] for _, r in rows])
        mask = torch.cat([mask, live], dim=1)
        pos = (mask.cumsum(-1) - 1)[:, -1:]
        out = model(input_ids=tok, attention_mask=mask, position_ids=pos, cache=cache,
                    use_cache=True)
        cache = out.cache
        steps.append(out.logits[:, -1])
    stacked = torch.stack(steps, dim=1)  # (B, steps, V)
    return [stacked[i, : len(r)] for i, (_, r) in enumerate(rows)]


def adapted(arch: str, variant: type = Parade):
    """A tiny backbone with ``variant`` attached and non-trivial adapter weights."""
    model, tokenizer = tiny(arch)
    variant().attach(model)
    perturb(model, scale=0.5)
    return model, tokenizer


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", [Parade, Parade1])
def test_teacher_forcing_equals_cached_decoding(arch, variant):
    model, _ = adapted(arch, variant)
    model.eval()
    rows = list(zip(PROMPTS, RESPONSES, strict=True))
    with torch.no_grad():
        decoded = cached_decode(model, rows)
        for side in ("right", "left"):
            forced = teacher_forced(model, rows, side)
            for a, b in zip(forced, decoded, strict=True):
                assert (a - b).abs().max().item() <= 1e-4, side
        base, _ = tiny(arch)
        plain = teacher_forced(base, rows, "right")
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(plain, decoded, strict=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_and_padding_side_invariance(arch):
    model, _ = adapted(arch)
    model.eval()
    rows = list(zip(PROMPTS, RESPONSES, strict=True))
    with torch.no_grad():
        alone = teacher_forced(model, rows[:1], "right")[0]
        for side in ("right", "left"):
            together = teacher_forced(model, rows, side)[0]
            assert (alone - together).abs().max().item() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_makes_vectors_once_and_is_batch_invariant(arch):
    model, tokenizer = adapted(arch)
    calls = []
    for layer in Parade.layers(model):
        layer.generator.register_forward_hook(lambda m, a, o: calls.append(o.shape[0]))
    prompts = ["The quick brown fox", "Hi", "A longer prompt about PARADE"]
    together = generate(model, tokenizer, prompts, max_new_tokens=6, min_new_tokens=6)
    assert len(calls) == len(Parade.layers(model))  # one prefill, no call at decode steps
    alone = [generate(model, tokenizer, [p], max_new_tokens=6, min_new_tokens=6)[0]
             for p in prompts]
    assert together == alone
    calls.clear()
    beams = generate(model, tokenizer, prompts, max_new_tokens=4, num_beams=3,
                     num_return_sequences=2)
    assert len(beams) == 6 and calls == [9] * len(Parade.layers(model))
    sampled = generate(model, tokenizer, prompts, max_new_tokens=4, do_sample=True, top_k=5)
    assert len(sampled) == 3


def test_beam_search_matches_manual_beam_expansion():
    """Beam search runs the generator on the expanded batch; every beam of an example shares
    that example's vectors, so reordering beams never mixes examples."""
    model, tokenizer = adapted("tiny-llama")
    beam_alone = generate(model, tokenizer, ["Hi"], max_new_tokens=5, num_beams=3)
    beam_batch = generate(model, tokenizer, ["Hi", "Some other prompt"], max_new_tokens=5,
                          num_beams=3)
    assert beam_batch[0] == beam_alone[0]
