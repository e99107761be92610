"""ProxylessNAS binary gates at the level of decisions (Cai et al., ICLR 2019, Sec. 3.2 and 3.2.1).

Each decision d has architecture logits α_d and path probabilities p_d = softmax(α_d). A *binary
gate* g_d is the one-hot vector of one option sampled from p_d (Eq. 3), so a forward pass runs one
path and costs the memory of one path.

* Weight step: one path, each decision's option drawn from p_d (``sample_path``).
* Architecture step, "two-path" mode (Sec. 3.2.1, "we sample two paths according to the multinomial
  distribution and mask all the other paths as if they do not exist"): two distinct options per
  decision drawn from p_d without replacement; their probabilities are renormalized,
  p̃ = softmax(α_d[pair]); the active option is drawn from p̃ (``sample_two_paths``).
* BinaryConnect gradient (Eq. 4), over the involved options J (the pair) with renormalized p̃:
  ∂L/∂α_i = Σ_{j∈J} ∂L/∂g_j · p̃_j (δ_ij − p̃_i) = p̃_i (∂L/∂g_i − Σ_j p̃_j ∂L/∂g_j)
  (``binary_connect_grad``); only the entries in J move.
* Rescaling (Sec. 3.2.1: "we rescale the value of updated architecture parameters by multiplying a
  ratio to keep the path weights of unsampled paths unchanged"): after the optimizer step both
  entries of the pair are shifted by the same offset so that Σ_{j∈J} exp(α_j) is what it was
  (``rescale_pair``), as the reference implementation's ``rescale_updated_arch_param`` does.
  The expected latency of the step is taken under the same two-path distribution (``pair_probs``,
  the reference's ``current_prob_over_ops``), so only the two sampled entries of α move.
* REINFORCE (Sec. 3.3, "REINFORCE-based approach"): ∇α J = E[(R − b) ∇α log p(path)] with
  log p(path) = Σ_d log p_d(path_d) (``log_prob``).

Besides this decision-level math, ``gated_forward`` runs the supernet with the binary gates of
two sampled paths (the strategy is ``hwnas.search.strategies.proxyless``) and ``check_mixable`` refuses
spaces whose candidates of one layer differ in shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.space.wiring import Registers
from hwnas.supernet.supernet import SuperNet, combo_weight


def softmax_np(alpha: np.ndarray | torch.Tensor) -> np.ndarray:
    """softmax of one logit vector in float64 (sampling probabilities, summing to 1 exactly enough)."""
    a = np.asarray(alpha.detach().cpu().double() if isinstance(alpha, torch.Tensor) else alpha, dtype=np.float64)
    e = np.exp(a - a.max())
    return e / e.sum()


def sample_option(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One option index drawn from ``probs`` (inverse CDF of one uniform draw)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(probs) - 1))


def sample_path(alphas: Sequence[torch.Tensor | np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The binary gates of a weight step: one option per decision drawn from softmax(α_d) (Eq. 3).

    Returns:
        Option indices, shape (num_decisions,).
    """
    return np.array([sample_option(softmax_np(a), rng) for a in alphas], dtype=np.int64)


@dataclass(frozen=True)
class TwoPaths:
    """The two sampled paths of an architecture step.

    Attributes:
        active: Option whose gate is 1, per decision, shape (D,).
        inactive: The other sampled option, per decision (equal to ``active`` for a decision with a
            single option, which then gets no gradient), shape (D,).
    """

    active: np.ndarray
    inactive: np.ndarray

    def pair(self, d: int) -> list[int]:
        """The involved options of decision ``d`` (active first)."""
        a, b = int(self.active[d]), int(self.inactive[d])
        return [a] if a == b else [a, b]


def sample_two_paths(alphas: Sequence[torch.Tensor | np.ndarray], rng: np.random.Generator) -> TwoPaths:
    """Two distinct options per decision drawn from softmax(α_d) without replacement (the first
    from p, the second from p with the first removed, as ``torch.multinomial(p, 2, replacement=False)``),
    then the active one drawn from the renormalized pair probabilities p̃ = softmax(α_d[pair]).
    """
    active, inactive = [], []
    for a in alphas:
        p = softmax_np(a)
        first = sample_option(p, rng)
        if p.size == 1:
            active.append(first)
            inactive.append(first)
            continue
        rest = p.copy()
        rest[first] = 0.0
        second = sample_option(rest / rest.sum(), rng)
        pair = (first, second)
        p_pair = p[list(pair)] / (p[first] + p[second])
        c = sample_option(p_pair, rng)
        active.append(pair[c])
        inactive.append(pair[1 - c])
    return TwoPaths(np.array(active, dtype=np.int64), np.array(inactive, dtype=np.int64))


def pair_probs(alphas: Sequence[torch.Tensor], paths: TwoPaths) -> list[torch.Tensor]:
    """The two-path distribution of every decision: p̃ = softmax(α_d[pair]) on the two sampled
    options, 0 elsewhere; differentiable in the two α entries only (the reference code's
    ``current_prob_over_ops`` in two-path mode, used for the expected latency of the step).
    """
    out = []
    for d, a in enumerate(alphas):
        idx = torch.as_tensor(paths.pair(d), dtype=torch.long)
        out.append(torch.zeros_like(a).index_put((idx,), torch.softmax(a[idx], dim=0)))
    return out


def one_hot_gates(active: np.ndarray, num_options: Sequence[int], *,
                  dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Binary gates g_d = one_hot(active_d) as leaf tensors that require grad (∂L/∂g is Eq. 4's input)."""
    gates = []
    for d, n in enumerate(num_options):
        g = torch.zeros(int(n), dtype=dtype)
        g[int(active[d])] = 1.0
        gates.append(g.requires_grad_(True))
    return gates


def binary_connect_grad(gate_grad: torch.Tensor, alpha: torch.Tensor, involved: Sequence[int]) -> torch.Tensor:
    """∂L/∂α of one decision from its gate gradient (Eq. 4 on the involved options).

    With p̃ = softmax(α[J]) over the involved options J and G_j = ∂L/∂g_j:
    ∂L/∂α_i = Σ_{j∈J} G_j p̃_j (δ_ij − p̃_i) = p̃_i (G_i − Σ_j p̃_j G_j) for i ∈ J, 0 elsewhere.
    With J = all options this is the "full" BinaryConnect estimate; with the two sampled options it
    is the two-path mode.

    Args:
        gate_grad: ∂L/∂g, shape (n,).
        alpha: α of the decision, shape (n,).
        involved: The option indices J.

    Returns:
        ∂L/∂α, shape (n,) (α's dtype).
    """
    idx = torch.as_tensor(list(involved), dtype=torch.long)
    out = torch.zeros_like(alpha, dtype=alpha.dtype)
    if idx.numel() < 2:
        return out
    with torch.no_grad():
        p = torch.softmax(alpha.detach()[idx], dim=0)
        g = gate_grad.detach().to(alpha.dtype)[idx]
        out[idx] = p * (g - (p * g).sum())
    return out


def rescale_pair(alpha: torch.Tensor, old: torch.Tensor, involved: Sequence[int]) -> None:
    """Shifts α[J] (in place) so that logsumexp(α[J]) equals logsumexp(old[J]): the probability of
    every option outside J is then what it was before the update (Sec. 3.2.1).

    Args:
        alpha: α after the optimizer step, shape (n,).
        old: α before the step, shape (n,).
        involved: The option indices J.
    """
    idx = torch.as_tensor(list(involved), dtype=torch.long)
    if idx.numel() < 2:
        return
    with torch.no_grad():
        offset = torch.logsumexp(alpha[idx], dim=0) - torch.logsumexp(old[idx], dim=0)
        alpha[idx] -= offset


def log_prob(alphas: Sequence[torch.Tensor], path: np.ndarray) -> torch.Tensor:
    """log p(path) = Σ_d log softmax(α_d)[path_d] (differentiable; REINFORCE's score function)."""
    return torch.stack([torch.log_softmax(a, dim=0)[int(path[d])] for d, a in enumerate(alphas)]).sum()


# ---- the supernet under binary gates -----------------------------------------------------------


def check_mixable(supernet: SuperNet) -> None:
    """Refuses spaces where the candidates of one layer differ in output shape (width decisions):
    the two-path architecture step adds the outputs of two sampled blocks.

    Raises:
        InputError: naming the space and the first such layer.
    """
    for si, slot in enumerate(supernet.slots):
        shapes: set[tuple[int, int]] = set()  # (channels, side) of each candidate's output
        inputs: set[tuple[int, int]] = set()
        identity = False
        for step in supernet.slot_steps(si).values():
            if step is None:  # a layer cut by a depth decision: the identity
                identity = True
                continue
            b = step.block
            shapes.add((b.cout, -(-b.hw // b.stride)))
            inputs.add((b.cin, b.hw))
        if identity:
            shapes |= inputs
        if len(shapes) > 1:
            raise InputError(f"space {supernet.space.name}: the candidates of layer {slot.name} have different "
                             f"output shapes, which the two-path gradient step cannot add; use --proxyless-mode "
                             f"reinforce or a space without width decisions.")


def gated_forward(supernet: SuperNet, x: torch.Tensor, gates: Sequence[torch.Tensor], paths: TwoPaths) -> torch.Tensor:
    """Logits of the active path with both sampled paths' binary gates in the graph (Sec. 3.2.1).

    Each layer outputs ``Σ_combos Π_d g_d[combo_d] · block_combo(x)`` over the active combination and,
    per decision of the layer, the combination with that decision's inactive option. With one-hot
    gates the value is the active block's output, and ∂L/∂g_d[o] = ⟨∂L/∂out, block(x)⟩ exactly as in
    ``SuperNet.weighted_forward(x, gates, compute=pairs)`` (combinations with two inactive options
    have zero gradient there). Inactive blocks run under ``no_grad``: their gate gradient needs
    their output only, not their internals, so memory stays near one path.

    Args:
        supernet: The supernet.
        x: Images, N, 3, R, R.
        gates: One-hot gates per decision (leaf tensors with ``requires_grad``).
        paths: The two sampled paths.

    Returns:
        Logits, N, classes.
    """
    active = [int(v) for v in paths.active]
    inactive = [int(v) for v in paths.inactive]
    if supernet.wired:
        return _gated_cell_forward(supernet, x, gates, active, inactive)
    for si, slot in enumerate(supernet.slots):
        plan = supernet.slot_steps(si)
        decs = slot.decisions
        combo = tuple(active[d] for d in decs)
        step = plan[combo]
        y = x if step is None else supernet.run_step(step, x)
        if not decs:
            x = y
            continue
        out = combo_weight(gates, decs, combo) * y
        for k, d in enumerate(decs):
            if inactive[d] == active[d]:
                continue
            other = combo[:k] + (inactive[d],) + combo[k + 1:]
            other_step = plan[other]
            with torch.no_grad():
                y_other = x if other_step is None else supernet.run_step(other_step, x)
            if y_other.shape != y.shape:
                raise ValueError(f"layer {slot.name}: sampled blocks of different shapes cannot be gated")
            out = out + combo_weight(gates, decs, other) * y_other.detach()
        x = out
    return x


def _gated_cell_forward(supernet: SuperNet, x: torch.Tensor, gates: Sequence[torch.Tensor], active: list[int],
                        inactive: list[int]) -> torch.Tensor:
    """``gated_forward`` on a cell network: each edge slot adds its gated terms into its node.

    The active path is computed exactly (a ``none`` edge, or one whose source node nothing wrote,
    adds nothing). An inactive option adds its gated, detached output only where the active one
    wrote or its node already exists; otherwise its gate gets no gradient this step, so that the
    active path's dead parts stay dead.
    """
    regs = Registers(x)
    for si, slot in enumerate(supernet.slots):
        plan = supernet.slot_steps(si)
        decs = slot.decisions
        combo = tuple(active[d] for d in decs)
        step = plan[combo]
        if not decs:
            if step is not None:
                regs.run(step.block, lambda *ins, step=step: supernet.run_step(step, *ins))
            continue
        out: torch.Tensor | None = None
        target = None
        ins = regs.inputs(step.block) if step is not None else None
        if step is not None and ins is not None:
            out, target = combo_weight(gates, decs, combo) * supernet.run_step(step, *ins), step.block
        for k, d in enumerate(decs):
            if inactive[d] == active[d]:
                continue
            other = combo[:k] + (inactive[d],) + combo[k + 1:]
            other_step = plan[other]
            if other_step is None or (out is None and other_step.block.dst not in regs.values):
                continue
            other_ins = regs.inputs(other_step.block)
            if other_ins is None:
                continue
            with torch.no_grad():
                y_other = supernet.run_step(other_step, *other_ins)
            term = combo_weight(gates, decs, other) * y_other.detach()
            out, target = (term, other_step.block) if out is None else (out + term, target)
        if out is not None and target is not None:
            regs.write(target, out)
    return regs.x
