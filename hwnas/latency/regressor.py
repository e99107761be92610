"""Per-block latency regressor: estimates blocks a latency table lacks from the entries it has.

A table covers the blocks it was profiled (or published) for; an architecture at another width,
kernel, expansion or feature-map size needs keys the table does not have. The regressor is trained
on the table's own entries, from nothing but their keys (``hwnas.space.blocks.parse_key``), so it works for
imported tables too.

Model choice (default ``linear``): a non-negative linear model on analytic work counts,

    lat(block) ≈ Σ_j c_j · work_j(block) + c_family,   c ≥ 0,

with ``work`` = dense-conv multiply-adds, depthwise multiply-adds, activation memory traffic
(elements read + written), h-swish elements, squeeze-excite elements, and one intercept per block
family (``mbconv``, ``Conv_1``, ...). It is fitted by least squares on *relative* error (sample
weights 1/y², so a 0.1 ms block counts as much as a 10 ms one). This is the roofline view of a
mobile CPU: time is throughput-bound work plus a fixed per-op cost. Unlike tree ensembles
(nn-Meter's random forests, Zhang et al., MobiSys 2021, Sec. 4) it extrapolates to widths and
resolutions outside the table's range, which is exactly what a missing key usually is, and 72
entries (the ProxylessNAS Pixel-1 table) are far too few for a forest to learn the response
surface. ``benchmarks/regressor_loo.py`` compares it with a random forest and gradient boosting by
leave-one-out on that table; the numbers are in ``benchmarks/RESULTS.md``.

Families with no entry in the table cannot be estimated (``EstimateError``): a regressor that never
saw an op would only guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from hwnas.space import parse_key

#: Continuous features, in column order (units: millions of MACs / elements, counts).
WORK_FEATURES = ("dense_mmac", "dw_mmac", "fixed_mmac", "mem_melem", "hswish_melem", "se_melem", "layers")


class EstimateError(ValueError):
    """A key the regressor cannot estimate (unparseable, or an op family absent from the table)."""


def family(parsed: Mapping[str, Any]) -> str:
    """Block family of a parsed key: the op of searchable layers, the part name of fixed ones."""
    return parsed["op"] or parsed["name"]


def work_features(parsed: Mapping[str, Any]) -> np.ndarray:
    """Analytic work counts of one block from its parsed key, shape (len(WORK_FEATURES),).

    Args:
        parsed: ``hwnas.space.blocks.parse_key(key)``.
    """
    p = parsed
    hw2, out2 = p["hw"] ** 2, p["out_hw"] ** 2
    cin, cout = p["cin"], p["cout"]
    k2 = p.get("kernel", 1) ** 2
    hs = p.get("hs", 0)
    se = p.get("se", 0)
    in_e, out_e = hw2 * cin, out2 * cout  # elements of the input / output tensors
    dense = dw = fixed = mem = hsw = se_e = 0.0
    layers = 1.0
    op = p["op"]
    if op == "mbconv":
        mid = p.get("expand", cin)
        expand = mid != cin
        dense = (hw2 * cin * mid if expand else 0) + out2 * mid * cout  # 1x1 expand + 1x1 project
        dw = out2 * mid * k2
        mem = in_e + (2 * hw2 * mid if expand else 0) + 2 * out2 * mid + out_e + 3 * out_e * p.get("idskip", 0)
        hsw = hs * ((hw2 * mid if expand else 0) + out2 * mid)
        se_e = se * 3 * out2 * mid  # pool read, scale read + write
        layers = (1 if expand else 0) + 2 + 2 * se
    elif op == "conv":
        dense = out2 * cin * cout * k2
        mem = in_e + out_e + 3 * out_e * p.get("idskip", 0)
        hsw, se_e, layers = hs * out_e, se * 3 * out_e, 1 + 2 * se
    elif op == "sepconv":
        dw, dense = out2 * cin * k2, out2 * cin * cout
        mem = in_e + 2 * out2 * cin + out_e + 3 * out_e * p.get("idskip", 0)
        hsw, se_e, layers = hs * out2 * cin, se * 3 * out2 * cin, 2 + 2 * se
    elif op in ("shuffle", "xception"):
        mid, proj, stride = p.get("mid", cout // 2), p.get("proj", 0), p.get("stride", 1)
        main_in = cin if stride == 2 else cin // 2
        main_out = cout - (proj if stride == 2 else cin // 2)
        if op == "shuffle":
            dense = hw2 * main_in * mid + out2 * mid * main_out
            dw = out2 * mid * k2
            layers = 3
        else:
            dw = out2 * main_in * k2 + 2 * out2 * mid * k2
            dense = out2 * main_in * mid + out2 * mid * mid + out2 * mid * main_out
            layers = 6
        if stride == 2:
            dw += out2 * cin * k2
            dense += out2 * cin * proj
            layers += 2
        mem = 2 * in_e + 4 * out2 * mid + 3 * out_e  # split/concat/shuffle copies included
    else:  # fixed parts: the key has no kernel; their family intercept and own slope absorb it
        name = p["name"]
        if name.startswith("Logits"):  # [global pool over hw² · cin] → linear cin → classes
            fixed, mem = cin * cout, in_e + cin + cout
        elif "Pool" in name:
            mem = in_e + out_e
        else:  # Conv, Conv_1, Conv_2: dense convolution (kernel unknown from the key)
            fixed, mem = out2 * cin * cout, in_e + out_e
    return np.array([dense / 1e6, dw / 1e6, fixed / 1e6, mem / 1e6, hsw / 1e6, se_e / 1e6, layers],
                    dtype=np.float64)


def parse_for_regression(key: str) -> dict[str, Any]:
    """``parse_key`` with the error type of this module."""
    try:
        return parse_key(key)
    except ValueError as exc:
        raise EstimateError(str(exc)) from None


# ---- models (a registry: name → factory of a fitted predictor) ------------------------------

Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
REGRESSORS: dict[str, Fitter] = {}


def register_regressor(name: str) -> Callable[[Fitter], Fitter]:
    """Registers ``fit(X, y, weights) -> predict(X) -> y`` under ``name``."""

    def deco(fn: Fitter) -> Fitter:
        REGRESSORS[name] = fn
        return fn

    return deco


@register_regressor("linear")
def _fit_linear(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Non-negative least squares on relative error (see the module docstring)."""
    from sklearn.linear_model import LinearRegression

    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # columns to O(1) for a well-conditioned fit
    model = LinearRegression(positive=True, fit_intercept=False).fit(x / scale, y, sample_weight=w)
    return lambda q: model.predict(q / scale)


@register_regressor("forest")
def _fit_forest(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Random forest on log features → log latency (nn-Meter's choice of model family)."""
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=0)
    model.fit(np.log1p(x), np.log(y))
    return lambda q: np.exp(model.predict(np.log1p(q)))


@register_regressor("boosting")
def _fit_boosting(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Gradient-boosted trees on log features → log latency."""
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=300, max_depth=3, learning_rate=0.05, random_state=0)
    model.fit(np.log1p(x), np.log(y))
    return lambda q: np.exp(model.predict(np.log1p(q)))


@dataclass(frozen=True)
class BlockRegressor:
    """A fitted per-block regressor (build it with ``BlockRegressor.fit``).

    Attributes:
        method: Registry name of the model (``linear``, ``forest``, ``boosting``).
        families: Block families seen in training, in one-hot column order.
        predict_fn: Features → ms.
        n_train: Number of training entries.
    """

    method: str
    families: tuple[str, ...]
    predict_fn: Callable[[np.ndarray], np.ndarray]
    n_train: int

    @classmethod
    def fit(cls, entries: Mapping[str, float], *, method: str = "linear") -> "BlockRegressor":
        """Fits on ``{key: ms}`` (e.g. a table's medians); unparseable keys are left out.

        Raises:
            EstimateError: for an unknown method or no usable entries.
        """
        if method not in REGRESSORS:
            raise EstimateError(f"regressor {method!r} is unknown (regressors: {', '.join(sorted(REGRESSORS))}).")
        parsed, ys = [], []
        for key, ms in entries.items():
            try:
                p = parse_key(key)
            except ValueError:
                continue
            if ms > 0:
                parsed.append(p)
                ys.append(float(ms))
        if not parsed:
            raise EstimateError("the table has no entries with positive latency to fit a block regressor on.")
        families = tuple(sorted({family(p) for p in parsed}))
        x = _design(parsed, families)
        y = np.asarray(ys)
        return cls(method=method, families=families, predict_fn=REGRESSORS[method](x, y, 1.0 / y**2),
                   n_train=len(ys))

    def predict(self, keys: Iterable[str]) -> np.ndarray:
        """Estimated ms of each key, shape (len(keys),).

        Raises:
            EstimateError: naming a key that does not parse or whose family the table lacks.
        """
        keys = list(keys)
        parsed = [parse_for_regression(k) for k in keys]
        for k, p in zip(keys, parsed):
            if family(p) not in self.families:
                raise EstimateError(f"cannot estimate {k}: the table has no {family(p)!r} entry to learn from.")
        if not parsed:
            return np.zeros(0)
        return np.maximum(self.predict_fn(_design(parsed, self.families)), 0.0)


def _design(parsed: list[dict[str, Any]], families: tuple[str, ...]) -> np.ndarray:
    """Design matrix: work features plus a one-hot family intercept, shape (N, F + len(families))."""
    work = np.stack([work_features(p) for p in parsed])
    onehot = np.zeros((len(parsed), len(families)))
    col = {f: i for i, f in enumerate(families)}
    for i, p in enumerate(parsed):
        onehot[i, col[family(p)]] = 1.0
    return np.concatenate([work, onehot], axis=1)


def leave_one_out(entries: Mapping[str, float], *, method: str = "linear") -> list[dict[str, Any]]:
    """Leave-one-out check: each entry predicted by a regressor fitted on all the others.

    Returns:
        ``[{"key", "family", "measured_ms", "predicted_ms", "error_pct"}]``; ``predicted_ms`` is
        ``None`` for an entry that is the only one of its family (not estimable without it).
    """
    rows = []
    items = list(entries.items())
    for i, (key, ms) in enumerate(items):
        rest = dict(items[:i] + items[i + 1:])
        reg = BlockRegressor.fit(rest, method=method)
        fam = family(parse_key(key))
        try:
            pred = float(reg.predict([key])[0])
        except EstimateError:
            pred = None
        err = None if pred is None else (pred - ms) / ms * 100.0
        rows.append({"key": key, "family": fam, "measured_ms": float(ms), "predicted_ms": pred, "error_pct": err})
    return rows
