"""Exporting many blocks to ONNX fast and resumably (the profiler's prepare phase).

The dynamo exporter costs about 0.5-1 s per call however small the module, which dominates
profiling (the mnasnet space has 1,333 distinct blocks). Blocks are therefore exported in groups:
one ``torch.onnx.export`` of a wrapper that runs ``group`` blocks side by side (input ``in<i>`` →
block i → output ``out<i>``), after which each block's own model is cut out of the group graph with
``onnx.utils.Extractor`` (``in<i>`` to ``out<i>``: exactly that block's nodes and weights). On the
mnasnet space at 224 px this took 0.15 s per block instead of 0.7 s. Export settings are those of
``hwnas.profile.onnx_io.export_onnx`` (opset ``OPSET``, weights inside the file, exporter chatter moved to
stderr); a group whose export fails falls back to ``export_onnx`` block by block.

Each block's file is ``<work>/<file_id(key)>.onnx``, written atomically (temp name + rename), so a
killed run leaves only complete files and a resumed run exports only what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from hwnas.profile.onnx_io import OPSET, export_onnx
from hwnas.space import Block, make_module

#: Blocks per grouped export.
EXPORT_GROUP = 48


class _SideBySide(torch.nn.Module):
    """Runs module i on input i; returns every output (one graph holding many blocks)."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(modules)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(m(x) for m, x in zip(self.blocks, xs))


def export_onnx_group(modules: Sequence[torch.nn.Module], input_shapes: Sequence[Sequence[int]],
                      paths: Sequence[Path], *, scratch: Path) -> None:
    """Exports each module to its own ONNX file through one grouped export (see module docstring).

    Args:
        modules: The modules (put in eval mode).
        input_shapes: N, C, H, W of each module's input.
        paths: Destination file of each module (written atomically).
        scratch: Where the group graph is written (deleted afterwards).
    """
    import onnx
    from onnx.utils import Extractor

    n = len(modules)
    wrapper = _SideBySide([m.eval() for m in modules])
    xs = tuple(torch.zeros(*s) for s in input_shapes)
    group_path = scratch / f".group.{os.getpid()}.onnx"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(wrapper, xs, str(group_path), dynamo=True, opset_version=OPSET, external_data=False,
                              input_names=[f"in{i}" for i in range(n)], output_names=[f"out{i}" for i in range(n)],
                              verbose=False)
        extractor = Extractor(onnx.load(str(group_path)))
        for i, path in enumerate(paths):
            sub = extractor.extract_model([f"in{i}"], [f"out{i}"])
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            onnx.save(sub, str(tmp))
            os.replace(tmp, path)
    finally:
        group_path.unlink(missing_ok=True)


def export_blocks(blocks: dict[str, Block], work: Path, *, batch: int, file_id: Callable[[str], str],
                  group: int = EXPORT_GROUP, progress: bool = True) -> tuple[dict[str, Path], int]:
    """Ensures ``work/<file_id(key)>.onnx`` exists for every block; returns the paths and how many
    were exported now (files already there are reused)."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {k: work / f"{file_id(k)}.onnx" for k in blocks}
    todo = [k for k in blocks if not paths[k].exists()]
    bar = tqdm(total=len(todo), desc="export", unit="block", file=sys.stderr, disable=not progress)
    try:
        for start in range(0, len(todo), group):
            keys = todo[start:start + group]
            modules = [make_module(blocks[k]) for k in keys]
            shapes = [(batch, blocks[k].cin, blocks[k].hw, blocks[k].hw) for k in keys]
            try:
                export_onnx_group(modules, shapes, [paths[k] for k in keys], scratch=work)
            except Exception:  # noqa: BLE001 - fall back to the plain exporter, one block at a time
                for k, m, s in zip(keys, modules, shapes):
                    if not paths[k].exists():
                        tmp = work / f".{paths[k].name}.{os.getpid()}.tmp.onnx"
                        export_onnx(m, s, tmp)
                        os.replace(tmp, paths[k])
            bar.update(len(keys))
    finally:
        bar.close()
    return paths, len(todo)
