"""Poolers of PARADE's vector generator: prompt tokens ``(B, T, r)`` -> one vector ``(B, r)``.

* :class:`CapsulePooler`: the paper's attentional capsule pooler (section 3.3, eqs. 7-10).
* :class:`LastTokenPooler`: PARADE-1, the last prompt token (section 4.5).
* :class:`RoutingPooler`: PARADE-2, dynamic-routing capsules (Sabour et al., 2017;
  Zhang et al., 2018) with one routing iteration (section 4.5).

Every pooler takes a boolean ``mask`` (True on prompt tokens); padding and response tokens
never contribute. Rows without any prompt token are an error. Weights may carry a leading
batch dimension (one set per row, for multi-tenant batches): the einsums broadcast over it.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.base import uniform_with_std


def squash(s: torch.Tensor) -> torch.Tensor:
    """Capsule squashing (eq. 8): ``‖s‖²/(1+‖s‖²) · s/‖s‖ = s·‖s‖/(1+‖s‖²)``; zero, with a
    finite (zero) gradient, at ``s = 0`` (the norm's gradient is defined as 0 there)."""
    norm = torch.linalg.vector_norm(s, dim=-1, keepdim=True)
    return s * (norm / (1.0 + norm * norm))


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``logits`` over ``dim`` where ``mask`` is True; exactly 0 elsewhere."""
    return torch.softmax(torch.where(mask, logits, float("-inf")), dim=dim)


def weighted_sum(weights: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``s_k = Σ_j w_{j,k} m_{j→k}``: ``(B, T, K)`` weights, ``(B, T, K, c)`` -> ``(B, K, c)``."""
    return (weights.unsqueeze(-1) * pred).sum(dim=1)


def check_mask(mask: torch.Tensor) -> None:
    """Every row must have a prompt token to pool over (a (B, T) bool mask).

    The poolers assume it. Reading the answer synchronises with a GPU, so PARADE checks it
    on the host before a forward (:meth:`~methods.parade.Parade.forward_inputs`,
    :meth:`~methods.parade.Parade.generating`), never inside one.
    """
    if not bool(mask.any(dim=1).all()):
        rows = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"PARADE: rows {rows} have no prompt token to pool over")


class _Capsules(nn.Module):
    """``K`` output capsules of width ``r/K`` with their prediction weights ``W_k^cap``."""

    def __init__(self, rank: int, num_capsules: int, init_std: float = 0.02) -> None:
        super().__init__()
        if rank % num_capsules:
            raise ValueError(
                f"rank r={rank} must be divisible by the number of capsules K={num_capsules}"
            )
        self.num_capsules, self.capsule_dim = num_capsules, rank // num_capsules
        self.weight = nn.Parameter(torch.empty(num_capsules, rank, self.capsule_dim))  # W_k^cap
        uniform_with_std(self.weight, init_std)
        self.last_attention: torch.Tensor | None = None  # (B, T, K), for diagnostics

    def predictions(self, h: torch.Tensor) -> torch.Tensor:
        """``m_{j→k} = h'_j W_k`` (eq. 7) for all capsules in one matmul: ``(B, T, K, r/K)``.

        ``W`` is ``(K, r, r/K)`` or per row ``(B, K, r, r/K)``; laid out as ``(…, r, K·r/K)``
        it is a single (batched) matrix product instead of an einsum's permutes."""
        w = self.weight.movedim(-3, -2).flatten(-2)  # (…, r, K * r/K)
        return (h @ w).unflatten(-1, (self.num_capsules, self.capsule_dim))


class CapsulePooler(_Capsules):
    """Attentional capsule pooler (eqs. 7-10) with ``K`` output capsules of width ``r/K``.

    ``m_{j→k} = h'_j W_k`` (eq. 7); initial logits ``m_{j,k} = v_kᵀ h'_j`` and
    ``n_{j,k} = softmax_j`` over prompt tokens (eq. 9); ``s_k = Σ_j n_{j,k} m_{j→k}``,
    ``c_k = squash(s_k)`` (eq. 8); one refinement ``m_{j,k} += c_kᵀ m_{j→k}`` (eq. 10: the
    agreement of the capsule with its prediction vector, the dimensionally consistent reading
    of the paper's ``c_kᵀ h'_j``), then ``n`` and ``c_k`` once more. Output: ``[c_1 … c_K]``.

    Readings (docs/paper_readings.md lists the alternatives and why):

    * eq. 10 cannot be taken literally: ``c_k`` has ``r/K`` dimensions and ``h'_j`` has ``r``.
      ``c_kᵀ m_{j→k} = c_kᵀ W_kᵀ h'_j = (W_k c_k)ᵀ h'_j``: the paper's product with ``c_k``
      mapped back to the input space by its own ``W_k``, which is also the routing-by-agreement
      update of the capsule networks it cites (Sabour et al., 2017). Rejected: comparing with
      capsule ``k``'s slice of ``h'_j``, zero-padding ``c_k``, or one shared ``[c_1…c_K]ᵀ h'_j``
      for all capsules.
    * section 3.3 writes ``d_model`` for the widths of ``v_k``, ``W_k^cap`` and ``d_cap``, but
      the pooler's input is ``h W_down`` (eq. 6), ``r`` wide: ``v_k ∈ R^r``, ``W_k ∈ R^{r×r/K}``.
    * the logits accumulate (``m ← m + …``, as written) and the output is recomputed from the
      refined weights ("with the new values of n_{j,k}, c_k is calculated again"); ``v_k`` is
      initialised like ``W_k^cap`` (section 4.3 names only ``W_down`` and ``W_k^cap``).
    * ``last_attention`` keeps the refined ``n`` (what makes the output): each capsule's
      column sums to one over the prompt tokens (``parade explain`` draws it).
    """

    def __init__(self, rank: int, num_capsules: int, init_std: float = 0.02) -> None:
        super().__init__(rank, num_capsules, init_std)
        self.query = nn.Parameter(torch.empty(num_capsules, rank))  # v_k
        uniform_with_std(self.query, init_std)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1)  # (B, T, 1)
        pred = self.predictions(h)  # (B, T, K, r/K)  m_{j→k}
        logits = h @ self.query.transpose(-1, -2)  # (B, T, K)  m_{j,k} = v_kᵀ h'_j, eq. 9
        n = masked_softmax(logits, keep, dim=1)  # (B, T, K)
        c = squash(weighted_sum(n, pred))  # (B, K, r/K)  eq. 8
        logits = logits + (c.unsqueeze(1) * pred).sum(dim=-1)  # eq. 10: + c_kᵀ m_{j→k}
        n = masked_softmax(logits, keep, dim=1)  # (B, T, K)
        c = squash(weighted_sum(n, pred))  # (B, K, r/K)
        self.last_attention = n.detach()
        return c.flatten(1)  # (B, r)


class RoutingPooler(_Capsules):
    """PARADE-2: dynamic routing with routing logits starting at zero and one iteration.

    Coupling coefficients are a softmax over the *output capsules* of the routing logits
    (uniform ``1/K`` at zero); ``s_k = Σ_j c_{j,k} m_{j→k}``, ``c_k = squash(s_k)``. With a single
    iteration the logit update that would follow does not influence the output.

    Reading of section 4.5's "the capsule pooler of (Zhang et al., 2018) with one iteration
    step" (docs/paper_readings.md): one iteration is one pass of the routing procedure
    (Sabour et al., 2017, procedure 1 with ``r = 1``): zero logits, coupling, ``s_k``, squash.
    So the coupling is uniform and the pooler is a (squashed) sum of the prompt's prediction
    vectors; the agreement update is never used, which is what the paper blames for PARADE-2's
    lower scores ("requires multiple iterations to calculate the proper information flow
    coefficients"). Rejected: a softmax over tokens (a mean instead of a sum), or counting
    "one iteration" as one agreement update after the first pass (two passes, which would
    not be the failure the paper describes). ``last_attention`` is the coupling, ``1/K`` on
    every prompt token.
    """

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = self.predictions(h)  # (B, T, K, r/K)
        # softmax over capsules of all-zero routing logits: 1/K on every prompt token
        coupling = (mask.to(h.dtype) / self.num_capsules).unsqueeze(-1)  # (B, T, 1)
        c = squash((coupling.unsqueeze(-1) * pred).sum(dim=1))  # (B, K, r/K)
        self.last_attention = coupling.detach().expand(*pred.shape[:3])  # (B, T, K)
        return c.flatten(1)  # (B, r)


class LastTokenPooler(nn.Module):
    """PARADE-1: the last prompt token, found from the mask (left or right padding)."""

    def __init__(self, rank: int, num_capsules: int = 1, init_std: float = 0.02) -> None:
        super().__init__()
        self.last_attention: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
        last = torch.where(mask, positions, -1).amax(dim=1)  # (B,)
        return h[torch.arange(h.shape[0], device=h.device), last]  # (B, r)


POOLERS: dict[str, type[nn.Module]] = {
    "capsule": CapsulePooler,
    "last": LastTokenPooler,
    "routing": RoutingPooler,
}
