"""Model cards of exported models: ``card.json`` (machine-readable) and ``card.md`` (for people).

A card states what was exported (architecture, parameters, FLOPs), how well it works (held-out
accuracy when known, before and after int8), how fast (the latency table's prediction next to the
measured latency, with the relative error; every measured number is the steady estimator's figure,
recorded with the estimator, its settings and the spread, ``hwnas.profile.steady``), how to feed it (preprocessing) and which files belong
to it, each with its size and sha256 so a deployment can check it got the right bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from hwnas.jsonio import atomic_write_bytes, write_json_atomic


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entries(folder: str | os.PathLike, names: Iterable[str]) -> list[dict[str, Any]]:
    """``[{"file", "bytes", "sha256"}]`` for files of ``folder`` (names relative to it)."""
    root = Path(folder)
    return [{"file": n, "bytes": (root / n).stat().st_size, "sha256": sha256_file(root / n)} for n in names]


#: Fields of a measurement kept in a latency row, next to ``measured_ms`` (the steady figure).
_STAT_KEYS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "count", "spread_pct", "estimator", "rounds",
              "runs_per_round", "unstable")


def latency_row(model: str, stats: dict[str, Any] | None, predicted: float | None) -> dict[str, Any]:
    """One latency row: ``predicted_ms`` (the table's prediction, or None) and ``measured_ms``, the
    steady figure of the measurement (``steady_ms``; ``median_ms`` is over all its runs, ``spread_pct``
    over its round medians); ``stats`` None: not measured (predicted only)."""
    if stats is None:
        return {"model": model, "predicted_ms": predicted, "measured_ms": None, "relative_error": None,
                "latency_source": "predicted" if predicted is not None else None, **{k: None for k in _STAT_KEYS}}
    measured = float(stats["steady_ms"])
    rel = None if predicted is None or measured <= 0 else (predicted - measured) / measured
    return {"model": model, "predicted_ms": predicted, "measured_ms": measured, "relative_error": rel,
            "latency_source": "measured", **{k: stats.get(k) for k in _STAT_KEYS}}


def _estimator_sentence(lat: dict[str, Any]) -> str:
    """How the measured numbers were made, and what "spread" means (card.md)."""
    est = lat.get("estimator")
    if not est:
        return f"Median of {lat.get('repeats')} runs after {lat.get('warmup')} warm-up runs."
    return (f"Each measured number is the steady figure of estimator `{est['name']}`: the "
            f"{round(100 * est['quantile'], 1):g}th percentile of {est['rounds']} round medians "
            f"({est['runs_per_round']} back-to-back runs per round, after {est['warmup']} warm-up runs), "
            f"i.e. the machine's fast, steady state; spread = (q90 - q10) / q50 of the round medians "
            f"(re-measured up to {est['retries']} time(s) when above {est['max_spread_pct']:g} %). "
            f"Predicted numbers come from the latency table, not from a run.")


def _ms(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f} ms"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def render_markdown(card: dict[str, Any]) -> str:
    """The human-readable card (``card.md``) for a card dict as written to ``card.json``."""
    arch = card["arch"]
    lat = card["latency"]
    lines = [
        f"# {card['name']}",
        "",
        f"Exported by hwnas {card['hwnas_version']} on {card['created']}.",
        "",
        "## Architecture",
        "",
        f"- space: `{arch['space']}`, resolution {arch['resolution']}, width x{arch['width_mult']}, "
        f"{arch['num_classes']} classes",
        f"- parameters: {card['params']:,}; FLOPs (multiply-adds, fvcore): {card['flops']:,}",
        f"- input: `{card['input']['name']}` {card['input']['shape']} float32 NCHW"
        f"{' (dynamic batch)' if card['input']['dynamic_batch'] else ''}; output: `{card['output']['name']}` logits",
        f"- weights: {card['weights'] or 'none (random initialization, batch norms randomized: for latency only)'}",
        "",
        "```json",
        json.dumps(arch["choices"], indent=None),
        "```",
        "",
        "## Preprocessing",
        "",
    ]
    pre = card.get("preprocessing")
    if pre:
        lines += [f"`x[c] = (pixel / 255 - mean[c]) / std[c]`, resized to {pre['resolution']}x{pre['resolution']} "
                  f"({pre['resize']}); mean {[round(v, 6) for v in pre['mean']]}, "
                  f"std {[round(v, 6) for v in pre['std']]}"
                  + ("; grayscale repeated to 3 channels." if pre.get("grayscale_to_rgb") == "repeat" else "."),
                  f"Dataset: `{pre['dataset']}`."]
    else:
        lines.append("Unknown (no trained weights with recorded preprocessing and no --data).")
    lines += ["", "## Accuracy (held-out split)", ""]
    acc = card.get("accuracy") or {}
    if acc:
        lines += ["| model | top-1 |", "|---|---|"]
        labels = {"trained": "at training time (PyTorch)", "pytorch": "PyTorch", "onnx": "ONNX fp32",
                  "int8": f"ONNX int8 ({(card.get('int8') or {}).get('mode', '')})"}
        for k, v in acc.items():
            if k in labels and v is not None:
                lines.append(f"| {labels[k]} | {_pct(v)} |")
        if acc.get("count"):
            lines.append(f"\n{acc['count']} images of `{acc.get('data')}`.")
    else:
        lines.append("Not measured (needs --weights and --data).")
    lines += [
        "", "## Latency", "",
        (f"Measured with backend `{lat['backend']}`, {lat['threads']} thread(s), batch {lat['batch']}"
         + (f", on {lat['processor']}" if lat.get("processor") else "") + ". " + _estimator_sentence(lat)
         if lat.get("measured", True) else "Not measured: the latency is predicted only (see the note below)."),
        "",
        "| model | predicted | measured (steady) | spread | median of all runs | p10 - p90 | relative error |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in lat["rows"]:
        rel = "n/a" if row.get("relative_error") is None else f"{100 * row['relative_error']:+.1f} %"
        p10_p90 = f"{row['p10_ms']:.3f} - {row['p90_ms']:.3f} ms" if row.get("p10_ms") is not None else "n/a"
        spread = "n/a" if row.get("spread_pct") is None else f"{row['spread_pct']:.1f} %"
        spread += " (unstable)" if row.get("unstable") else ""
        lines.append(f"| {row['model']} | {_ms(row.get('predicted_ms'))} | {_ms(row['measured_ms'])} | {spread} "
                     f"| {_ms(row.get('median_ms'))} | {p10_p90} | {rel} |")
    if lat.get("table"):
        lines.append(f"\nPrediction: {lat['prediction']} from latency table `{lat['table']}`.")
    else:
        lines.append("\nNo latency table given: no prediction.")
    for note in lat.get("notes", []):
        lines.append(f"\nNote: {note}")
    lines += ["", "## Verification", "", "| file | max abs diff vs PyTorch | tolerance | inputs |", "|---|---|---|---|"]
    for v in card["verification"]:
        lines.append(f"| {v['file']} | {v['max_abs_diff']:.3g} | {v['atol']:g} | {v['inputs']} at batch "
                     f"{', '.join(str(b) for b in v['batch_sizes'])} |")
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    for f in card["files"]:
        lines.append(f"| {f['file']} | {f['bytes']:,} | `{f['sha256']}` |")
    lines.append("")
    return "\n".join(lines)


def write_card(folder: str | os.PathLike, card: dict[str, Any]) -> tuple[Path, Path]:
    """Writes ``card.json`` and ``card.md`` into ``folder`` atomically; returns both paths."""
    root = Path(folder)
    js = write_json_atomic(root / "card.json", card)
    md = atomic_write_bytes(root / "card.md", render_markdown(card).encode())
    return js, md
