"""The latency model: an architecture's latency from a lookup table, a per-block regressor for keys
the table lacks, and a calibration learned from end-to-end measurements.

    LAT(arch) = calibration( Σ_blocks lat(block) ),   lat(block) = table[key] or regressor(key)

(the ProxylessNAS latency model, Cai et al., ICLR 2019, Sec. 3.3 / Eq. 6 and Fig. 5, with a
calibration of the sum; see ``hwnas.latency.calibration``). ``BatchPredictor.build``
(``hwnas.latency.batch``) gives the vectorized predictor for many architectures at once and the
differentiable expected latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from hwnas.errors import InputError
from hwnas.latency.calibration import Calibration, calibration_path
from hwnas.latency.regressor import BlockRegressor, EstimateError
from hwnas.latency.table import LatencyTable, entry_ms
from hwnas.space import Block, op_key

if TYPE_CHECKING:
    from hwnas.space import SearchSpace

#: Source of a block's latency in ``Prediction.per_block``.
TABLE, ESTIMATED, FREE = "table", "estimated", "free"


@dataclass(frozen=True)
class Prediction:
    """A predicted latency.

    Attributes:
        latency_ms: The model's answer: the calibrated sum (the plain sum without calibration), ms.
        lut_sum_ms: Σ over blocks of the table (or estimated) latency, ms.
        per_block: ``[{"slot", "op", "key", "ms", "source"}]``, source ``table``, ``estimated`` or
            ``free`` (skip layers).
        estimated: Keys absent from the table whose latency the regressor estimated, without repeats.
        calibrated: Whether a calibration was applied.
        num_blocks: Blocks with a table key (the calibration's second feature).
    """

    latency_ms: float
    lut_sum_ms: float
    per_block: list[dict[str, Any]]
    estimated: list[str]
    calibrated: bool
    num_blocks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "lut_sum_ms": self.lut_sum_ms, "calibrated": self.calibrated,
                "num_blocks": self.num_blocks, "missing": list(self.estimated), "estimated": list(self.estimated),
                "per_block": list(self.per_block)}


def _name_keys(keys: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class LatencyModel:
    """Predicts architecture latency from a ``LatencyTable``.

    Args:
        table: The device's lookup table.
        calibration: A calibration fitted for this table, or None for the plain LUT sum.
        regressor: Registry name of the per-block regressor for keys the table lacks.
    """

    def __init__(self, table: LatencyTable, *, calibration: Calibration | None = None,
                 regressor: str = "linear") -> None:
        if calibration is not None:
            calibration.check_table(table)
        self.table = table
        self.calibration = calibration
        self.regressor_method = regressor
        self._regressor: BlockRegressor | None = None
        self._estimates: dict[str, float] = {}  # key → ms, regressor answers already computed
        self._spaces: dict[str, "SearchSpace"] = {}

    @classmethod
    def load(cls, table_path: str | Path, *, calibration: bool = True) -> "LatencyModel":
        """Loads a table and, with ``calibration``, its ``<stem>.calibration.json`` when present.

        Raises:
            InputError: for a malformed table or calibration, or a calibration of another table.
        """
        table = LatencyTable.load(table_path)
        cal = None
        cal_path = calibration_path(table_path)
        if calibration and cal_path.exists():
            cal = Calibration.load(cal_path, table=table)
        return cls(table, calibration=cal)

    @classmethod
    def from_table(cls, table: LatencyTable, *, calibration: Calibration | None = None) -> "LatencyModel":
        """A model over an in-memory table (calibration checked against it)."""
        return cls(table, calibration=calibration)

    def uncalibrated(self) -> "LatencyModel":
        """The same table (and regressor) without calibration."""
        m = LatencyModel(self.table, calibration=None, regressor=self.regressor_method)
        m._regressor, m._estimates = self._regressor, self._estimates
        return m

    # ---- per block -------------------------------------------------------------------------

    @property
    def regressor(self) -> BlockRegressor:
        """The per-block regressor, fitted on the table's entries (``entry_ms``) at first use."""
        if self._regressor is None:
            medians = {k: entry_ms(e) for k, e in self.table.entries.items()}
            try:
                self._regressor = BlockRegressor.fit(medians, method=self.regressor_method)
            except EstimateError as exc:
                raise InputError(f"latency table {self.table.path}: {exc}") from None
        return self._regressor

    def keys_ms(self, keys: Sequence[str], *, strict: bool = False) -> tuple[list[float], list[str]]:
        """Latency of each key, ms (table median, else the regressor's estimate), and the estimated keys.

        Raises:
            InputError: with ``strict`` when any key is absent (naming them), or when a key cannot
                be estimated.
        """
        missing = list(dict.fromkeys(k for k in keys if k not in self.table.entries))
        if missing and strict:
            raise InputError(f"latency table {self.table.path or ''} has no entry for {len(missing)} block(s) "
                             f"and strict mode refuses estimates: {_name_keys(missing)}.")
        todo = [k for k in missing if k not in self._estimates]
        if todo:
            try:
                values = self.regressor.predict(todo)
            except EstimateError as exc:
                raise InputError(f"latency table {self.table.path or ''}: {exc}") from None
            self._estimates.update(zip(todo, (float(v) for v in values)))
        ms = [self.table.ms(k) if k in self.table.entries else self._estimates[k] for k in keys]
        return ms, missing

    def predict_blocks(self, blocks: Sequence[Block], *, strict: bool = False) -> Prediction:
        """Predicts the latency of a block sequence (a whole network, stem to classifier).

        Raises:
            InputError: with ``strict`` when a block is not in the table (naming the keys).
        """
        keys = [op_key(b) for b in blocks]
        ms, estimated = self.keys_ms([k for k in keys if k is not None], strict=strict)
        it = iter(ms)
        per_block = []
        for b, k in zip(blocks, keys):
            v = 0.0 if k is None else next(it)
            source = FREE if k is None else (ESTIMATED if k in estimated else TABLE)
            per_block.append({"slot": b.slot, "op": b.op, "key": k, "ms": v, "source": source})
        lut_sum = float(sum(ms))
        n = len(ms)
        lat = lut_sum if self.calibration is None else self.calibration.apply(lut_sum_ms=lut_sum, num_blocks=n)
        return Prediction(latency_ms=float(lat), lut_sum_ms=lut_sum, per_block=per_block, estimated=estimated,
                          calibrated=self.calibration is not None, num_blocks=n)

    def predict(self, arch: dict[str, Any], *, strict: bool = False, space: "SearchSpace | None" = None) -> Prediction:
        """Predicts an architecture's latency.

        Args:
            arch: Architecture JSON (``{"space", "resolution", "choices", ...}``).
            strict: Refuse estimates (``InputError`` naming the keys the table lacks).
            space: The arch's space; loaded by ``arch["space"]`` when omitted.

        Raises:
            InputError: for an invalid arch, a table measured at another resolution (or width
                multiplier, or class count, where its header records them), or (strict) missing keys.
        """
        sp = space or self._space(arch)
        a = sp.validate_arch(arch)
        self.table.check_arch(a)
        return self.predict_blocks(sp.resolve(a), strict=strict)

    def _space(self, arch: Any) -> "SearchSpace":
        from hwnas.space import load_named_space

        name = arch.get("space") if isinstance(arch, dict) else None
        if not isinstance(name, str):
            raise InputError("arch: field 'space' is missing or not a string.")
        if name not in self._spaces:
            self._spaces[name] = load_named_space(name, field="arch: field 'space'")
        return self._spaces[name]
