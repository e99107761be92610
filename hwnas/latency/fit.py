"""A latency table fitted from whole-model timings, for devices that cannot be profiled block by block.

An NPU behind a vendor SDK, a delegate that fuses the graph, a board with only ``benchmark_model``:
there only whole networks can be timed. Every latency in hwnas is a sum over blocks plus a constant
(``hwnas.latency.calibration``), so a table can be *fitted* from such timings, y_i ≈ c + Σ_b C_ib·v_b,
where C counts the blocks of arch i and v_b is one block's cost. The fit knows the cost structure:
dead cell edges, ``none`` and skip ops are no block and cost nothing, and the skeleton (stem, head,
reduction blocks), shared by every arch, is not identifiable apart from the constant, so it is
folded into it. The block costs v_b are not free (a space has hundreds of keys and a user times
tens of archs); they are a small linear model per *op family* (op, kernel, squeeze-excite, h-swish):

* without a prior: v_b = α_f·MACs_b + β_f·mem_b + δ_f, a roofline-style model of compute, memory
  traffic and per-op overhead (nn-Meter, Zhang et al., MobiSys 2021, Sec. 4.2, predicts kernels
  from FLOPs, memory and shapes; BRP-NAS, Dudziak et al., NeurIPS 2020, and HELP, Lee et al.,
  NeurIPS 2021, Sec. 3, learn device latency from few samples with such a prior);
* with a prior table from another device (or resolution): v_b = s_f·prior_b + α·MACs_b + β·mem_b + o,
  a scale of the prior per op family, plus one shared roofline correction (what the other device
  does not see, e.g. per-op dispatch cost) and the constant c. This is the few-shot path: HELP
  (Sec. 4.1) reaches a Spearman ρ of 0.932 from 10 measured archs per unseen device. Where the
  prior orders the blocks wrongly, its scales go to 0 and the fit is the shared roofline.

The family coefficients (α_f, β_f, δ_f or s_f) are shrunk towards shared means (α, β, δ or s) by a
ridge penalty λ‖θ_f − μ‖² on standardized columns (hierarchical shrinkage: with few archs the fit
is the shared model, with many the families separate); the means, the shared terms and c are free. Every
coefficient is non-negative, so every block costs ≥ 0 ms (Lawson & Hanson, *Solving Least Squares
Problems*, 1974, Ch. 23, NNLS). The loss is the relative squared error Σ ((ŷ_i − y_i)/y_i)², as
for the calibration. λ is chosen by leave-one-out (the hat-matrix identity r_(i) = r_i / (1 − h_ii)
of ridge regression on the coefficients off their bound; Hastie, Tibshirani & Friedman, *Elements
of Statistical Learning*, 2009, Eq. 7.52 and Sec. 7.10). The reported error is an honest outer
leave-one-out: for each arch, λ is chosen and the model refitted on the others, and the held-out
arch is predicted by the table that fit would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.latency.calibration import Calibration, table_fingerprint
from hwnas.latency.measured import Measured
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable, utc_now
from hwnas.rankstats import kendall_tau, spearman
from hwnas.space import Block, CostCounter, op_key
from hwnas.space.blocks import CELL_EDGE_OPS, CELL_SKELETON_OPS

#: Candidate ridge strengths, relative to the number of archs (columns are standardized).
LAMBDAS = tuple(float(x) for x in np.logspace(-4, 2, 13))
#: A vanishing ridge on every column, so collinear shared columns still give a unique solution.
JITTER = 1e-8


def op_family(block: Block) -> str:
    """The family a block's cost model belongs to: op, kernel, squeeze-excite and h-swish.

    Example: an inverted residual with a 5x5 depthwise kernel, SE and h-swish is ``mbconv-k5-se-hs``;
    widths, strides and shapes are features, not families. A named op (a cell op such as
    ``nor_conv_3x3``, or a fixed part) is its own family: its name already fixes the kernel.
    """
    named = block.name or (block.op if block.op in CELL_EDGE_OPS + CELL_SKELETON_OPS else "")
    f = named or f"{block.op}-k{block.kernel}"
    return f + ("-se" if block.se else "") + ("-hs" if block.act == "hswish" else "")


def block_features(block: Block, counter: CostCounter) -> tuple[float, float]:
    """(MACs in millions, memory traffic in millions of elements) of one block at its input shape.

    Memory traffic: input, output and expanded activations plus weights, as a roofline model counts
    them (``mid`` channels are read and written once at the input and once at the output size).
    """
    cost = counter.block(block)
    ohw = block.out_hw
    mem = block.cin * block.hw ** 2 + block.cout * ohw ** 2 + cost.params
    if block.mid and block.mid != block.cin:
        mem += block.mid * (block.hw ** 2 + ohw ** 2)
    return cost.flops / 1e6, mem / 1e6


@dataclass(frozen=True)
class Structure:
    """The cost structure of measured archs: which keys vary and how often each arch has them.

    Attributes:
        keys: Every key of the space at these settings (skeleton keys included), sorted.
        blocks: A block of each key.
        fixed: Count of each skeleton key (the same in every arch).
        counts: (N, K) variable (non-skeleton) occurrences of each key per arch.
        families: Family of each key (``op_family``).
        var_families: Families with a variable occurrence somewhere in the space, sorted.
    """

    keys: list[str]
    blocks: list[Block]
    fixed: np.ndarray
    counts: np.ndarray
    families: list[str]
    var_families: list[str]


def structure(space, archs: Sequence[dict[str, Any]], *, settings: Mapping[str, Any]) -> Structure:
    """Counts the keyed blocks of each arch, apart from the skeleton (slots without decisions)."""
    layout = space.layout(resolution=settings["resolution"], width_mult=settings["width_mult"],
                          num_classes=settings["num_classes"])
    rep: dict[str, Block] = {}
    fixed: dict[str, int] = {}
    var_keys: set[str] = set()
    for t in layout:
        for b in t.blocks:
            k = op_key(b)
            if k is None:
                continue
            rep.setdefault(k, b)
            if not t.decisions:
                fixed[k] = fixed.get(k, 0) + 1
            else:
                var_keys.add(k)
    keys = sorted(rep)
    col = {k: j for j, k in enumerate(keys)}
    fixed_v = np.array([fixed.get(k, 0) for k in keys], dtype=np.float64)
    counts = np.zeros((len(archs), len(keys)))
    for i, a in enumerate(archs):
        for b in space.resolve(a):
            k = op_key(b)
            if k is not None:
                counts[i, col[k]] += 1
    counts -= fixed_v[None, :]
    families = [op_family(rep[k]) for k in keys]
    return Structure(keys=keys, blocks=[rep[k] for k in keys], fixed=fixed_v, counts=counts, families=families,
                     var_families=sorted({families[col[k]] for k in var_keys}))


def prior_costs(space, prior: LatencyModel, keys: Sequence[str], *, settings: Mapping[str, Any]) -> np.ndarray:
    """(K,) the prior's ms for each key at ``settings``.

    A prior table at other settings (the r224 table as prior of a 32-px device) is read through the
    layout: a key's prior cost is the prior's cost of the same slot and options at the prior's
    resolution, width and classes (the mean where several slots share a key). Keys the prior table
    lacks are its regressor's estimates (``LatencyModel.keys_ms``).
    """
    d = prior.table.device
    there = {"resolution": int(d.get("resolution") or settings["resolution"]),
             "width_mult": float(d.get("width_mult") or settings["width_mult"]),
             "num_classes": int(d.get("num_classes") or settings["num_classes"])}
    model = prior.uncalibrated()
    if all(there[k] == settings[k] for k in there):
        return np.asarray(model.keys_ms(list(keys))[0], dtype=np.float64)
    mapped: dict[str, list[str]] = {}
    for slot in space.slots():
        here_b = space.slot_blocks(slot, **settings)
        there_b = space.slot_blocks(slot, **there)
        for combo, b in here_b.items():
            bp = there_b.get(combo)
            k, kp = (op_key(b) if b is not None else None), (op_key(bp) if bp is not None else None)
            if k is not None and kp is not None:
                mapped.setdefault(k, []).append(kp)
    flat = sorted({kp for k in keys for kp in mapped.get(k, [k])})
    ms = dict(zip(flat, model.keys_ms(flat)[0]))
    return np.array([np.mean([ms[kp] for kp in mapped.get(k, [k])]) for k in keys], dtype=np.float64)


@dataclass(frozen=True)
class Basis:
    """Per-key features of the block-cost model and how their coefficients are shared.

    A key of family f costs ``v_b = Σ_j θ_fj·feats[b, j]`` (ms) for the per-family features and
    ``Σ_j θ_j·feats[b, j]`` for the shared ones; keys of a family that never varies (skeleton parts)
    use the per-family features' shared means μ_j.

    Attributes:
        feats: (K, J) features of each key (MACs M, memory M elements, 1; or prior ms, 1).
        names: The J feature names (``macs_ms_per_M``, ``mem_ms_per_M``, ``per_block_ms``, ``scale``).
        per_family: (J,) True where each family has its own coefficient, shrunk to a shared mean.
        fam: (K,) index of each key's family in ``families``, -1 for the others.
        families: The varying families (``Structure.var_families``).
    """

    feats: np.ndarray  # K, J
    names: list[str]
    per_family: np.ndarray  # J, bool
    fam: np.ndarray  # K, int
    families: list[str]

    @property
    def columns(self) -> list[str]:
        """Coefficient names: per-family θ_fj (``family:feature``), the means μ_j, the shared θ_j, the constant."""
        fams = self.families
        pf = [n for n, p in zip(self.names, self.per_family) if p]
        sh = [n for n, p in zip(self.names, self.per_family) if not p]
        return [f"{f}:{n}" for f in fams for n in pf] + pf + sh + ["constant_ms"]

    def key_costs(self, theta: np.ndarray) -> np.ndarray:
        """(K,) ms of every key under coefficients ``theta`` (ordered as ``columns``)."""
        nf, pf = len(self.families), np.flatnonzero(self.per_family)
        sh = np.flatnonzero(~self.per_family)
        per = theta[:nf * len(pf)].reshape(nf, len(pf))  # F, Jf
        mean = theta[nf * len(pf):nf * len(pf) + len(pf)]
        shared = theta[nf * len(pf) + len(pf):-1]
        coef = np.where((self.fam >= 0)[:, None], per[np.clip(self.fam, 0, None)], mean[None, :])  # K, Jf
        return (self.feats[:, pf] * coef).sum(axis=1) + self.feats[:, sh] @ shared


def basis(st: Structure, *, prior_ms: np.ndarray | None, counter: CostCounter) -> Basis:
    """The features of the no-prior (roofline) or the prior (scaled-table) block-cost model."""
    k = len(st.keys)
    fidx = {f: j for j, f in enumerate(st.var_families)}
    fam = np.array([fidx.get(f, -1) for f in st.families], dtype=np.int64)
    roof = np.concatenate([np.array([block_features(b, counter) for b in st.blocks]).reshape(k, 2),
                           np.ones((k, 1))], axis=1)  # K, 3: MACs M, mem M, 1
    names = ["macs_ms_per_M", "mem_ms_per_M", "per_block_ms"]
    if prior_ms is None:
        feats, per_family = roof, [True, True, True]
    else:
        feats = np.concatenate([prior_ms[:, None], roof], axis=1)  # K, 4: prior ms, MACs M, mem M, 1
        names, per_family = ["scale"] + names, [True, False, False, False]
    return Basis(feats=feats, names=names, per_family=np.array(per_family), fam=fam,
                 families=list(st.var_families))


@dataclass(frozen=True)
class _Problem:
    """The data rows (relative: row i divided by y_i) and the shrinkage rows of the fit, standardized.

    Coefficients are ``theta = t / scale``; the shrinkage rows are ``t_fj − m_j`` (a family's
    standardized coefficient minus the shared mean's).
    """

    z: np.ndarray  # N, P: data rows, standardized
    shrink: np.ndarray  # R, P: shrinkage rows
    scale: np.ndarray  # P


def _problem(st: Structure, bs: Basis, idx: np.ndarray, y: np.ndarray) -> _Problem:
    counts = st.counts[idx]  # N, K
    nf, pf, sh = len(st.var_families), np.flatnonzero(bs.per_family), np.flatnonzero(~bs.per_family)
    cols, shrink_pairs = [], []
    for f in range(nf):
        on = (bs.fam == f).astype(np.float64)
        cols += [counts @ (bs.feats[:, j] * on) for j in pf]
    means = [np.zeros(len(idx)) for _ in pf]  # μ_j appear only in the shrinkage rows
    shared = [counts @ bs.feats[:, j] for j in sh]
    x = np.stack(cols + means + shared + [np.ones(len(idx))], axis=1) / y[:, None]  # N, P: relative
    p = x.shape[1]
    scale = np.sqrt(np.mean(x ** 2, axis=0))
    for jj in range(len(pf)):  # a family's coefficient and its mean share the total feature's scale
        members = [f * len(pf) + jj for f in range(nf)]
        total = np.sqrt(np.mean(x[:, members].sum(axis=1) ** 2))
        scale[members + [nf * len(pf) + jj]] = total
        shrink_pairs += [(m, nf * len(pf) + jj) for m in members]
    scale[scale == 0] = 1.0
    shrink = np.zeros((len(shrink_pairs), p))
    for r, (m, mu) in enumerate(shrink_pairs):
        shrink[r, m], shrink[r, mu] = 1.0, -1.0
    return _Problem(z=x / scale, shrink=shrink, scale=scale)


def _solve(pb: _Problem, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative ridge: min ‖z·t − 1‖² + λn‖shrink·t‖² + εn‖t‖², t ≥ 0 (Lawson–Hanson NNLS).

    Returns the coefficients in original units and the leave-one-out leverages h_ii of the data rows,
    from the hat matrix on the coefficients that are not at their bound (exact while leaving one
    arch out does not change which coefficients are zero).
    """
    from scipy.optimize import nnls

    n, p = pb.z.shape
    a = np.concatenate([pb.z, np.sqrt(lam * n) * pb.shrink, np.sqrt(JITTER * n) * np.eye(p)])
    t, _ = nnls(a, np.concatenate([np.ones(n), np.zeros(a.shape[0] - n)]), maxiter=50 * p)
    free = t > 0
    zf = pb.z[:, free]
    gram = a[:, free].T @ a[:, free]
    h = np.einsum("ij,jk,ik->i", zf, np.linalg.pinv(gram), zf) if free.any() else np.zeros(n)
    return t / pb.scale, h


def _choose_lambda(pb: _Problem, lambdas: Sequence[float]) -> tuple[float, np.ndarray]:
    """The λ of least leave-one-out relative error (r_i / (1 − h_ii)), and its coefficients."""
    x = pb.z * pb.scale
    best: tuple[float, float, np.ndarray] | None = None
    for lam in lambdas:
        theta, h = _solve(pb, lam)
        r = x @ theta - 1.0  # relative residuals
        score = float(np.mean((r / np.clip(1.0 - h, 1e-6, None)) ** 2))
        if best is None or score < best[0] - 1e-12:
            best = (score, lam, theta)
    assert best is not None
    return best[1], best[2]


def _predict(st: Structure, bs: Basis, theta: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of archs ``idx`` (ms), and every key's cost (ms, non-negative by construction)."""
    v = bs.key_costs(theta)  # K, ms
    return st.counts[idx] @ v + theta[-1], v


@dataclass(frozen=True)
class Fit:
    """A fitted latency model and its error estimate.

    Attributes:
        table: The fitted table (every key of the space at the measured settings, ``device.source: fitted``).
        calibration: Its constant (skeleton and per-inference overhead), as a calibration of the table.
        report: ``n``, ``method``, ``lambda``, ``free_parameters``, ``penalized_parameters``,
            ``fit_rmse_pct``, ``loo_rmse_pct``, ``loo_within_10pct``, ``loo_mape``, ``spearman``
            and ``kendall`` (of the leave-one-out predictions), ``coefficients``.
        loo_ms: The outer leave-one-out prediction of each measured arch, ms.
    """

    table: LatencyTable
    calibration: Calibration
    report: dict[str, Any]
    loo_ms: np.ndarray = field(repr=False)


def fit_table(space, measured: Measured, *, device: Mapping[str, Any], prior: LatencyModel | None = None,
              lambdas: Sequence[float] = LAMBDAS, loo: bool = True) -> Fit:
    """Fits a latency table of ``space`` from whole-model timings.

    Args:
        space: The space of the measured archs.
        measured: The timings (``hwnas.latency.measured.read``).
        device: The fitted table's device header (name, backend, ...); the scope and ``source:
            fitted`` are added.
        prior: A latency model of another device (or resolution) whose block costs are rescaled;
            None for the roofline model.
        lambdas: Candidate ridge strengths (relative to n, on standardized columns).
        loo: Compute the outer leave-one-out error (n refits).

    Raises:
        InputError: too few archs for the free parameters, or an op family that appears in the
            space but in no measured arch (its cost is not determined).
    """
    settings = measured.settings
    st = structure(space, measured.archs, settings=settings)
    seen = {f for f, c in zip(st.families, (st.counts > 0).any(axis=0)) if c}
    unseen = [f for f in st.var_families if f not in seen]
    n = len(measured)
    if unseen:
        raise InputError(f"op family {unseen[0]} of space {space.name} appears in none of the {n} measured archs"
                         f"{f' (nor do {len(unseen) - 1} more)' if len(unseen) > 1 else ''}, so its cost cannot be "
                         f"fitted; measure archs that use it (hwnas latency measure picks archs covering every option).")
    counter = CostCounter()
    prior_ms = None if prior is None else prior_costs(space, prior, st.keys, settings=settings)
    bs = basis(st, prior_ms=prior_ms, counter=counter)
    free = int((~bs.per_family).sum() + bs.per_family.sum()) + 1  # shared (or mean) rates and the constant
    if n < free + 2:
        raise InputError(f"fitting {space.name} needs at least {free + 2} measured archs ({free} free parameters "
                         f"plus two for the leave-one-out error), got {n}.")
    y = np.asarray(measured.latency_ms, dtype=np.float64)
    every = np.arange(n)
    lam, theta = _choose_lambda(_problem(st, bs, every, y), lambdas)
    pred, v = _predict(st, bs, theta, every)
    loo_ms = np.full(n, np.nan)
    if loo:
        for i in range(n):
            rest = every[every != i]
            _, th = _choose_lambda(_problem(st, bs, rest, y[rest]), lambdas)
            loo_ms[i] = _predict(st, bs, th, np.array([i]))[0][0]
    fit_err = (pred - y) / y * 100.0  # %
    report: dict[str, Any] = {
        "n": n, "method": "prior" if prior is not None else "roofline", "lambda": lam,
        "free_parameters": free, "penalized_parameters": len(st.var_families) * int(bs.per_family.sum()),
        "families": st.var_families, "fit_rmse_pct": float(np.sqrt(np.mean(fit_err ** 2))),
        "coefficients": dict(zip(bs.columns, (float(t) for t in theta))),
    }
    if loo:
        err = (loo_ms - y) / y * 100.0  # %
        report.update({"loo_rmse_pct": float(np.sqrt(np.mean(err ** 2))),
                       "loo_within_10pct": float(np.mean(np.abs(err) <= 10.0)),
                       "loo_mape": float(np.mean(np.abs(err))), "spearman": spearman(loo_ms, y),
                       "kendall": kendall_tau(loo_ms, y)})
    if prior is not None:
        report["prior"] = {"path": prior.table.path, "name": prior.table.device.get("name"),
                           "backend": prior.table.device.get("backend"),
                           "resolution": prior.table.device.get("resolution")}
    table = LatencyTable(device={**dict(device), **settings, "spaces": [space.name], "source": "fitted",
                                 "fit": report},
                         entries={k: {"median_ms": float(ms), "count": 0, "source": "fitted"}
                                  for k, ms in zip(st.keys, v)},
                         created=utc_now())
    intercept = float(theta[-1] - st.fixed @ v)  # ms: the constant minus the skeleton now held in entries
    cal = Calibration(features=("lut_sum_ms", "num_blocks"), coef=(1.0, 0.0), intercept_ms=intercept,
                      table=table_fingerprint(table), table_created=table.created,
                      fit={"n": n, "space": space.name, "rmse_pct": report["fit_rmse_pct"],
                           "mape": float(np.mean(np.abs(fit_err))), "source": "fitted",
                           **{k: report[k] for k in ("loo_rmse_pct", "loo_within_10pct", "spearman") if k in report}})
    return Fit(table=table, calibration=cal, report=report, loo_ms=loo_ms)
