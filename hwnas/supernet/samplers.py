"""Path samplers: which architectures (decisions) a supernet training step runs.

* ``uniform_paths``: single path, each decision uniform (SPOS, Guo et al. 2020, Sec. 3.2).
* ``fair_paths``: strict fairness (FairNAS, Chu et al. 2021, Sec. 3.2, Fig. 2): per step, m paths
  that together use every option of every decision; gradients of the m paths are accumulated and
  applied in one optimizer step.
* ``constrained_uniform``: rejection sampling that keeps only paths whose predicted cost lies in a range
  (constraint-aware supernet training).
* ``sandwich``: the largest and the smallest path first, then the base sampler's (BigNAS's sandwich
  rule, Yu et al. ECCV 2020, Sec. 3.1); ``extreme_paths`` finds them.

Samplers are pure functions of a ``numpy.random.Generator``; the training loop derives one
generator per step from (seed, step), so a resumed run draws the same paths.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hwnas.errors import InputError
from hwnas.space import SearchSpace

PathSampler = Callable[[np.random.Generator], np.ndarray]  # → (m, num_decisions) option indices


def uniform_paths(space: SearchSpace) -> PathSampler:
    """One uniformly random path per step."""
    n = np.asarray(space.num_options)

    def sample(rng: np.random.Generator) -> np.ndarray:
        return (rng.random((1, n.size)) * n).astype(np.int64)

    return sample


def fair_paths(space: SearchSpace) -> PathSampler:
    """FairNAS strict fairness: m = max options; paths whose per-decision options are permutations.

    Each decision with n options contributes a random permutation of its options, extended (when
    n < m) by further draws without repetition from a fresh permutation, so within one step every
    option of every decision runs at least once, exactly once when n = m, and at most ceil(m / n)
    times.
    """
    counts = space.num_options
    m = max(counts)

    def sample(rng: np.random.Generator) -> np.ndarray:
        out = np.empty((m, len(counts)), dtype=np.int64)
        for d, n in enumerate(counts):
            col = np.concatenate([rng.permutation(n) for _ in range(-(-m // n))])
            out[:, d] = col[:m]
        return out

    return sample


def constrained_uniform(space: SearchSpace, *, accept: Callable[[np.ndarray], np.ndarray], batch: int = 256,
                        max_rounds: int = 64) -> PathSampler:
    """Uniform single paths restricted to those ``accept`` keeps (constraint-aware supernet training).

    Draws ``batch`` uniform paths at a time and returns the first accepted one: the result is uniform
    over the accepted region. Not combinable with fair sampling, whose paths must be permutations.

    Args:
        space: The search space.
        accept: Vectorized predicate on option indices (k, num_decisions) → (k,) bool, e.g. predicted
            latency within [low, high].
        batch: Paths drawn per round.
        max_rounds: Rounds before giving up.

    Raises:
        InputError: when no accepted path is found.
    """
    n = np.asarray(space.num_options)

    def sample(rng: np.random.Generator) -> np.ndarray:
        for _ in range(max_rounds):
            paths = (rng.random((batch, n.size)) * n).astype(np.int64)
            ok = np.flatnonzero(accept(paths))
            if ok.size:
                return paths[ok[:1]]
        raise InputError(f"constraint-aware sampling found no path in {batch * max_rounds} draws; "
                         f"widen the range or turn it off.")

    return sample


def sandwich(base: PathSampler, largest: np.ndarray, smallest: np.ndarray) -> PathSampler:
    """BigNAS's sandwich rule (Yu et al. 2020, Sec. 3.1): every step trains the largest and the
    smallest path, then the paths of ``base`` (rows: largest, smallest, base's paths)."""
    fixed = np.stack([np.asarray(largest, dtype=np.int64), np.asarray(smallest, dtype=np.int64)])

    def sample(rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([fixed, base(rng)])

    return sample


def block_size(block) -> int:
    """Weights of a block's convolutions and linear layers (its "size" for the sandwich rule)."""
    b = block
    if b.op == "skip" or b.op in ("maxpool", "avgpool"):
        return 0
    se = 2 * b.se * (b.mid if b.op == "mbconv" else (b.cin if b.op == "sepconv" else b.cout))
    k2 = b.kernel * b.kernel
    if b.op == "mbconv":
        return (b.cin * b.mid if b.mid != b.cin else 0) + b.mid * k2 + b.mid * b.cout + se
    if b.op == "sepconv":
        return b.cin * k2 + b.cin * b.cout + se
    if b.op in ("conv", "classifier"):
        return b.cin * b.cout * (k2 if b.op == "conv" else 1) + se
    return b.cin * b.mid + b.mid * k2 + b.mid * b.cout + b.proj * (b.cin + k2)  # shuffle units, roughly


def extreme_paths(supernet, *, sweeps: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The largest and the smallest path of a supernet by total ``block_size``.

    BigNAS's largest and smallest child take the largest (smallest) option of every dimension; with
    op-type and skip options that have no order, coordinate ascent (descent) on the path's size
    finds them: from option 0, each decision in turn takes its best option given the others, for
    ``sweeps`` passes.

    Returns:
        (largest, smallest) option indices, shape (num_decisions,) each.
    """
    n = supernet.space.num_options

    def size(idx: np.ndarray) -> int:
        return sum(block_size(s.block) for s in supernet.path(idx))

    out = []
    for sign in (1, -1):
        idx = np.zeros(len(n), dtype=np.int64)
        for _ in range(sweeps):
            for d, k in enumerate(n):
                scores = []
                for o in range(k):
                    idx[d] = o
                    scores.append(sign * size(idx))
                idx[d] = int(np.argmax(scores))
        out.append(idx.copy())
    return out[0], out[1]


SAMPLERS: dict[str, Callable[[SearchSpace], PathSampler]] = {"uniform": uniform_paths, "fair": fair_paths}


# ---- Gumbel-TopK (MSG-DAS) ---------------------------------------------------------------------

import torch  # noqa: E402


def gumbel_topk(logits: torch.Tensor, k: int, tau: float, *, hard: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """K mutually exclusive Gumbel-softmax samples over the last dimension (MSG-DAS, Sec. 3.1, Alg. 1).

    One Gumbel draw ``g`` per call (shape of ``logits``) is shared by the K samples:
    ``r¹ = (α + g) / τ`` and, for k = 1..K, ``hᵏ = softmax(rᵏ)`` (Eq. 1-2), ``ĥᵏ = one_hot(argmax hᵏ)``
    and ``rᵏ⁺¹ = rᵏ + log(1 − ĥᵏ)`` (Eq. 3), which sets the chosen entry to −∞ so that no option is
    chosen twice. The argmax order of ``α + g`` is the Gumbel-top-k trick: row 1 is distributed as
    ``softmax(α)``, row k+1 as sampling without replacement given rows 1..k (Plackett-Luce).
    With ``hard`` the rows are one-hot in the forward pass and carry the straight-through gradient of
    ``hᵏ`` (``ĥᵏ − sg(hᵏ) + hᵏ``); K = 1 is GDAS's hard Gumbel-softmax (Dong & Yang 2019) and draws
    the noise exactly as ``torch.nn.functional.gumbel_softmax`` does (−log of an Exp(1) draw).

    Args:
        logits: α, shape (..., n): leading dimensions are independent decisions (e.g. layers).
        k: Samples per decision, 1 ≤ k ≤ n.
        tau: Softmax temperature τ > 0.
        hard: One-hot forward with straight-through gradients (else the relaxed ``hᵏ``).
        generator: Source of the Gumbel noise (default: torch's global generator).

    Returns:
        Tensor of shape (k, *logits.shape); ``out[i]`` is the i-th sample of every decision.

    Raises:
        ValueError: when ``k`` is outside [1, n] or ``tau`` is not positive.
    """
    n = logits.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (options per decision), got {k}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    expo = torch.empty_like(logits, memory_format=torch.contiguous_format).exponential_(generator=generator)
    gumbels = -expo.clamp_min(torch.finfo(expo.dtype).tiny).log()  # Gumbel(0, 1), one draw per call
    r = (logits + gumbels) / tau  # ..., n
    rows = []
    for _ in range(k):
        soft = torch.softmax(r, dim=-1)  # hᵏ (Eq. 2)
        chosen = torch.zeros_like(soft).scatter_(-1, soft.detach().argmax(dim=-1, keepdim=True), 1.0)  # ĥᵏ
        rows.append(chosen - soft.detach() + soft if hard else soft)
        r = r + torch.log1p(-chosen)  # Eq. 3: log(1 − ĥᵏ), −∞ at the chosen option
    return torch.stack(rows)
