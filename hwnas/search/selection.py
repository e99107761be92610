"""Measured final selection: the winner is the most accurate candidate whose *measured* latency fits.

A latency table goes stale on a machine whose speed moves (issue 15: the shipped table predicted
``mobilenet_v2`` at 0.451 ms while it measured 0.55-0.75 ms), so a search's predicted winner can
land over the budget on the device. After the strategy returns:

1. Keep the candidates that are feasible by prediction (latency, FLOPs, params), sort them by
   accuracy (ties: lower predicted latency, then option indices) and take the best ``verify``
   (``result.best`` always among them when feasible).
2. Time them end to end on the table's backend with the steady estimator
   (``hwnas.profile.steady``), side by side with a reference architecture in the same rounds, in
   chunks of ``chunk`` candidates (each chunk with the reference), so an interrupted run resumes
   after the last finished chunk.
3. Judge each candidate: an absolute budget T (``--latency-ms``) on its measured steady latency
   (``measured ≤ T``); a relative budget ``REF:FACTOR`` (``--latency-rel``) on its measured ratio
   to REF, the median of per-round ratios (``ratio ≤ FACTOR``), which survives a machine that
   switches speed (ratios of models timed in the same round move far less than absolute figures).
4. The winner is the most accurate candidate within budget; none → ``NoCandidateFits``. "Most
   accurate" is judged with the accuracy's sampling error: the strategy's own answer (its
   ``best``) keeps first place against any candidate that is not more accurate by more than
   ``accuracy_margin`` (the two-proportion test's 95% half-width on the scoring split,
   ``tie_margin``). A supernet score on a few hundred images differs by a few points between
   statistically tied candidates (issue 15: 0.115-0.133 on 600 images at chance level), and
   without this rule such noise replaced the budget-targeted ProxylessNAS answer at 0.83·T by a
   random sample at 0.71·T.
5. Feed back: ``drift`` = median over verified candidates of measured/predicted, ``table_drift`` =
   the reference's measured/predicted; when ``|drift − 1|`` exceeds the estimator's spread (the
   median spread of the verified candidates' round medians), a ``calibration_refresh`` records
   ``scale = drift``, applied to the *reported* predicted numbers only (the table is not changed).

The function is pure apart from the ``measure`` callable, so tests pass a stand-in with known
latencies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.profile import SteadySettings

#: (archs by name, reference name) → an object like ``hwnas.profile.steady.SideBySide``.
MeasureFn = Callable[[Mapping[str, dict[str, Any]], str], Any]

#: Name of the reference in every measured chunk.
REFERENCE = "reference"
#: z of the two-sided 95% test another candidate must pass to displace the strategy's best.
TIE_Z = 1.96


def tie_margin(accuracy: float | None, *, n: int | None, z: float = TIE_Z) -> float:
    """The accuracy difference two candidates scored on the same ``n`` images need to differ.

    ``z · sqrt(2 · p · (1 − p) / n)``: the half-width of the Wald interval of the difference of two
    proportions near ``p`` (the strategy's best's accuracy). 0 when ``n`` or ``p`` is unknown.

    Example: p = 0.9 on n = 600 images: 1.96 · sqrt(2 · 0.9 · 0.1 / 600) = 0.0339.
    """
    if accuracy is None or not n or n < 1:
        return 0.0
    p = min(max(float(accuracy), 0.0), 1.0)
    return float(z * np.sqrt(2.0 * p * (1.0 - p) / n))


def prefer_best(rows: Sequence[Mapping[str, Any]], *, best: Sequence[int] | None,
                margin: float) -> list[dict[str, Any]]:
    """Accuracy order in which ``best`` precedes every row not more accurate by more than ``margin``.

    Args:
        rows: Candidates or verified rows (``indices``, ``accuracy``), in any order.
        best: The strategy's best's option indices, or None (plain accuracy order).
        margin: The accuracy difference that counts (``tie_margin``).
    """
    ordered = [dict(r) for r in sorted(rows, key=lambda r: _order({**r, "latency_ms": r.get(
        "latency_ms", r.get("predicted_latency_ms"))}))]
    key = None if best is None else [int(i) for i in best]
    mine = next((r for r in ordered if [int(i) for i in r["indices"]] == key), None)
    if mine is None:
        return ordered
    bar = _accuracy(mine) + margin
    others = [r for r in ordered if r is not mine]
    return [r for r in others if _accuracy(r) > bar] + [mine] + [r for r in others if not _accuracy(r) > bar]


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of measured final selection.

    Attributes:
        verify: Candidates to measure (the best ``verify`` feasible by prediction); 0 turns it off.
        chunk: Candidates per side-by-side measurement (each with the reference); the run's state is
            saved after each chunk.
        steady: Settings of the steady estimator.
    """

    verify: int = 8
    chunk: int = 8
    steady: SteadySettings = field(default_factory=SteadySettings)

    def validate(self) -> None:
        if isinstance(self.verify, bool) or not isinstance(self.verify, int) or self.verify < 0:
            raise InputError(f"--verify must be a non-negative integer, got {self.verify!r}.")
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise InputError(f"measured selection: chunk must be a positive integer, got {self.chunk!r}.")
        self.steady.validate()

    def to_json(self) -> dict[str, Any]:
        return {"verify": self.verify, "chunk": self.chunk, "steady": asdict(self.steady)}


@dataclass(frozen=True)
class Budget:
    """The latency budget of a run.

    Attributes:
        latency_ms: The budget in ms (for a relative budget: ``factor`` × the reference's predicted ms).
        reference: The reference's name (a preset, or an arch file path); the space's first preset
            for an absolute budget.
        reference_predicted_ms: The table's prediction of the reference, ms.
        factor: The relative budget's FACTOR, or None for an absolute ``--latency-ms``.
    """

    latency_ms: float
    reference: str
    reference_predicted_ms: float
    factor: float | None = None

    @property
    def relative(self) -> bool:
        return self.factor is not None


@dataclass(frozen=True)
class Selection:
    """The outcome of measured selection.

    Attributes:
        winner: The winning row of ``rows``, or None when no candidate fits measured.
        rows: Every verified candidate (in accuracy order), see ``verified_row``.
        closest: The row closest to the budget (smallest measured/budget) when there is no winner.
        reference: ``{name, predicted_ms, measured_ms, spread_pct}`` (measured: median over chunks).
        drift: Median over ``rows`` of measured / predicted.
        table_drift: The reference's measured / predicted.
        calibration_refresh: ``{scale, drift, spread_pct, applied_to}`` when |drift − 1| exceeds the
            estimator's spread, else None.
        estimator: The steady estimator's name, settings, attempts and instability.
    """

    winner: dict[str, Any] | None
    rows: list[dict[str, Any]]
    closest: dict[str, Any] | None
    reference: dict[str, Any]
    drift: float | None
    table_drift: float | None
    calibration_refresh: dict[str, Any] | None
    estimator: dict[str, Any]


class NoCandidateFits(RuntimeError):
    """No verified candidate meets the budget measured (the CLI exits 1); carries the selection."""

    def __init__(self, message: str, selection: Selection) -> None:
        super().__init__(message)
        self.selection = selection


def _accuracy(c: Mapping[str, Any]) -> float:
    a = c.get("accuracy")
    return float(a) if a is not None else float("-inf")


def _order(c: Mapping[str, Any]) -> tuple:
    return (-_accuracy(c), float(c["latency_ms"]), [int(i) for i in c["indices"]])


def shortlist(candidates: Sequence[Mapping[str, Any]], *, best: Mapping[str, Any] | None,
              feasible: Callable[[Mapping[str, Any]], bool], k: int) -> list[dict[str, Any]]:
    """The ``k`` most accurate candidates feasible by prediction, ``best`` always among them if feasible.

    Args:
        candidates: ``{"indices", "accuracy", "latency_ms", "flops", "params"}`` each (duplicates allowed).
        best: The strategy's best candidate in the same form, or None.
        feasible: Whether a candidate meets every bound by prediction.
        k: How many.
    """
    unique: dict[tuple[int, ...], dict[str, Any]] = {}
    for c in list(candidates) + ([best] if best is not None else []):
        key = tuple(int(i) for i in c["indices"])
        if key not in unique or _accuracy(c) > _accuracy(unique[key]):
            unique[key] = {**c, "indices": list(key)}
    pool = sorted((c for c in unique.values() if feasible(c)), key=_order)
    chosen = pool[:k]
    if best is not None and k > 0:
        bkey = [int(i) for i in best["indices"]]
        if all(c["indices"] != bkey for c in chosen):
            mine = [c for c in pool if c["indices"] == bkey]
            if mine:
                chosen = sorted(chosen[:k - 1] + mine, key=_order)
    return chosen


def verified_row(c: Mapping[str, Any], *, arch: dict[str, Any], measured: Any, name: str,
                 budget: Budget) -> dict[str, Any]:
    """One verified candidate: predicted and measured side by side, and whether it is within budget.

    ``measured`` is the chunk's ``SideBySide`` (``latency[name].ms``, ``.spread_pct``, ``ratio[name]``).
    """
    lat = measured.latency[name]
    ref = measured.latency[REFERENCE]
    ratio = float(measured.ratio[name])
    ms = float(lat.ms)
    within = ratio <= budget.factor if budget.relative else ms <= budget.latency_ms
    return {"indices": [int(i) for i in c["indices"]], "arch": arch,
            "accuracy": None if c.get("accuracy") is None else float(c["accuracy"]),
            "predicted_latency_ms": float(c["latency_ms"]), "measured_latency_ms": ms,
            "measured_spread_pct": float(lat.spread_pct), "ratio_to_reference": ratio,
            "ratio_spread_pct": float(measured.ratio_spread_pct[name]) if measured.ratio_spread_pct else None,
            "reference_measured_ms": float(ref.ms), "flops": c.get("flops"), "params": c.get("params"),
            "within_budget": bool(within), "judged_on": "measured ratio" if budget.relative else "measured ms"}


def _estimator(measured: Any, settings: SteadySettings) -> dict[str, Any]:
    return {"name": settings.name, "settings": asdict(settings), "attempts": int(measured.attempts),
            "unstable": bool(measured.unstable)}


def select_measured(candidates: Sequence[Mapping[str, Any]], *, best: Mapping[str, Any] | None,
                    feasible: Callable[[Mapping[str, Any]], bool], budget: Budget,
                    decode: Callable[[Sequence[int]], dict[str, Any]], reference_arch: dict[str, Any],
                    measure: MeasureFn, config: SelectionConfig,
                    done: Sequence[Mapping[str, Any]] = (),
                    on_chunk: Callable[[list[dict[str, Any]]], None] | None = None,
                    accuracy_margin: float = 0.0) -> Selection:
    """Measures the shortlist side by side with the reference and picks the measured winner.

    Args:
        candidates: The strategy's candidates (``SearchResult.candidates``).
        best: The strategy's best, ``{"indices", "accuracy", "latency_ms", "flops", "params"}``.
        feasible: Whether a candidate meets every bound by prediction.
        budget: The run's budget (absolute or relative) and its reference.
        decode: Option indices → architecture JSON.
        reference_arch: The reference architecture (at the run's resolution, width and classes).
        measure: Times ``{name: arch}`` side by side with the named reference (``measure_archs_side_by_side``
            in a run; a stand-in with known latencies in tests).
        config: How many candidates, chunk size and the estimator settings.
        done: Rows (``verified_row`` plus ``estimator``) of chunks finished before an interruption.
        on_chunk: Called with every row so far after each chunk (the runner saves them to its state).
        accuracy_margin: How much more accurate than ``best`` another candidate must be to come
            first (``tie_margin`` of the scoring split; 0: plain accuracy order).

    Returns:
        The selection (``winner`` set).

    Raises:
        NoCandidateFits: when no verified candidate is within budget measured (its ``selection``
            holds the rows and the closest candidate).
        RuntimeError: when there is nothing to measure (no candidate feasible by prediction and no
            ``best``); with none feasible by prediction, ``best`` alone is measured.
    """
    config.validate()
    todo = shortlist(candidates, best=best, feasible=feasible, k=config.verify)
    if not todo and best is not None and config.verify > 0:  # none fits by prediction: the device decides
        todo = [{**best, "indices": [int(i) for i in best["indices"]]}]
    if not todo:
        raise RuntimeError("measured selection: no candidate of the search is feasible by prediction.")
    rows: list[dict[str, Any]] = [dict(r) for r in done]
    finished = {tuple(r["indices"]) for r in rows}
    pending = [c for c in todo if tuple(c["indices"]) not in finished]
    for start in range(0, len(pending), config.chunk):
        part = pending[start:start + config.chunk]
        archs = {f"c{i}": decode(c["indices"]) for i, c in enumerate(part)}
        measured = measure({**archs, REFERENCE: reference_arch}, REFERENCE)
        est = _estimator(measured, config.steady)
        for i, c in enumerate(part):
            rows.append({**verified_row(c, arch=archs[f"c{i}"], measured=measured, name=f"c{i}", budget=budget),
                         "reference_spread_pct": float(measured.latency[REFERENCE].spread_pct), "estimator": est})
        if on_chunk is not None:
            on_chunk(list(rows))
    keep = {tuple(c["indices"]) for c in todo}
    rows = prefer_best([r for r in rows if tuple(r["indices"]) in keep],
                       best=None if best is None else best["indices"], margin=accuracy_margin)
    return summarize(rows, budget=budget)


def summarize(rows: list[dict[str, Any]], *, budget: Budget) -> Selection:
    """The selection from verified rows (in preference order, ``prefer_best``): winner, reference, drift,
    calibration refresh."""
    ref_ms = float(np.median([r["reference_measured_ms"] for r in rows]))
    ref_spread = float(np.median([r["reference_spread_pct"] for r in rows]))
    drift = float(np.median([r["measured_latency_ms"] / r["predicted_latency_ms"] for r in rows]))
    table_drift = ref_ms / budget.reference_predicted_ms
    spread = float(np.median([r["measured_spread_pct"] for r in rows]))
    refresh = None
    if abs(drift - 1.0) * 100.0 > spread:
        refresh = {"scale": drift, "drift": drift, "spread_pct": spread,
                   "applied_to": "reported predicted latencies (predicted_refreshed_ms); the table is unchanged"}
    scale = refresh["scale"] if refresh else 1.0
    estimator = dict(rows[-1]["estimator"])
    estimator["attempts"] = max(int(r["estimator"]["attempts"]) for r in rows)
    estimator["unstable"] = any(bool(r["estimator"]["unstable"]) for r in rows)
    rows = [{**{k: v for k, v in r.items() if k != "estimator"},
             "predicted_refreshed_ms": r["predicted_latency_ms"] * scale} for r in rows]
    winner = next((r for r in rows if r["within_budget"]), None)
    closest = None
    if winner is None:
        closest = min(rows, key=lambda r: (r["ratio_to_reference"] / budget.factor) if budget.relative
                      else r["measured_latency_ms"] / budget.latency_ms)
    reference = {"name": budget.reference, "predicted_ms": budget.reference_predicted_ms, "measured_ms": ref_ms,
                 "spread_pct": ref_spread}
    selection = Selection(winner=winner, rows=rows, closest=closest, reference=reference, drift=drift,
                          table_drift=table_drift, calibration_refresh=refresh, estimator=estimator)
    if winner is None:
        raise NoCandidateFits(no_fit_message(closest, budget=budget, n=len(rows)), selection)
    return selection


def no_fit_message(closest: Mapping[str, Any], *, budget: Budget, n: int) -> str:
    """One sentence: no candidate fits measured, and the closest one against the budget."""
    acc = closest.get("accuracy")
    acc_txt = f"accuracy {100 * acc:.2f}%, " if acc is not None else ""
    if budget.relative:
        got = (f"measured {closest['ratio_to_reference']:.3f}x {budget.reference} side by side "
               f"({closest['measured_latency_ms']:.4f} ms) against the budget factor {budget.factor:g}")
    else:
        got = f"measured {closest['measured_latency_ms']:.4f} ms against the budget {budget.latency_ms:g} ms"
    return (f"no candidate meets the latency budget measured on the device: of {n} verified, the closest "
            f"({acc_txt}predicted {closest['predicted_latency_ms']:.4f} ms) {got}; loosen the budget or "
            f"profile a fresh table.")


def selection_fields(selection: Selection | None, *, budget: Budget, off: str | None) -> dict[str, Any]:
    """The ``summary.json`` fields of measured selection (all of them, ``None`` where not measured).

    Args:
        selection: The selection, or None when the result is predicted only.
        budget: The run's budget and reference.
        off: Why the result is predicted only (``--verify 0``, an unmeasurable table), or None.
    """
    win = selection.winner if selection is not None else None
    measured = selection is not None
    refresh = selection.calibration_refresh if selection is not None else None
    if refresh is not None and win is not None:
        refresh = {**refresh, "winner_predicted_refreshed_ms": win["predicted_refreshed_ms"]}
    return {
        "latency_source": "measured" if measured else "predicted",
        "constraints_judged_on": "measured" if measured else "predicted",
        "predicted_only_reason": off,
        "measured_latency_ms": win["measured_latency_ms"] if win else None,
        "measured_spread_pct": win["measured_spread_pct"] if win else None,
        "measured_ratio": win["ratio_to_reference"] if win else None,
        "reference": budget.reference,
        "budget_factor": budget.factor,
        "reference_predicted_ms": budget.reference_predicted_ms,
        "reference_measured_ms": selection.reference["measured_ms"] if measured else None,
        "reference_spread_pct": selection.reference["spread_pct"] if measured else None,
        "drift": selection.drift if measured else None,
        "table_drift": selection.table_drift if measured else None,
        "calibration_refresh": refresh,
        "estimator": selection.estimator if measured else None,
        "verified": selection.rows if measured else [],
        **({"closest": selection.closest} if measured and win is None else {}),
    }
