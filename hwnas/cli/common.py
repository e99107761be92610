"""Arguments and loaders shared by several commands."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.safeio import short
from hwnas.space import SearchSpace, load_named_space, load_space, space_of_choices
from hwnas.train import Distributed, init_distributed
from hwnas.train.distributed import DIST_BACKENDS, TRAIN_DEVICES


def add_arch_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--space``, ``--preset | --arch`` and the overrides ``--resolution/--width-mult/--num-classes``."""
    p.add_argument("--space", help="search space name or file (defaults to the arch file's space)")
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--preset", help="a named architecture of the space (hwnas spaces lists them)")
    g.add_argument("--arch", help="architecture JSON file")
    p.add_argument("--resolution", type=int, help="input resolution override, pixels")
    p.add_argument("--width-mult", type=float, help="width multiplier override")
    p.add_argument("--num-classes", type=int, help="number of classes override")


#: Architecture settings a latency table's header can supply (``device.<field>``).
SETTING_FIELDS = ("resolution", "width_mult", "num_classes")


def load_arch_file(path: str, *, space: str | None = None,
                   defaults: Mapping[str, Any] | None = None) -> tuple[SearchSpace, dict[str, Any]]:
    """Reads an arch file and validates it against its space (``space`` must agree when given).

    ``defaults`` (e.g. a table's resolution, width and classes) fill the settings the file leaves out.
    """
    raw = read_json(path, what="arch file")
    if not isinstance(raw, dict) or not isinstance(raw.get("space"), str):
        raise InputError(f"arch file {path}: field 'space' is missing or not a string.")
    raw = {**{k: v for k, v in (defaults or {}).items() if v is not None and k not in raw}, **raw}
    sp = load_space(space) if space else load_named_space(raw["space"], field=f"arch file {path}: field 'space'")
    if raw["space"] != sp.name:
        raise InputError(f"arch file {path} is for space {short(raw['space'])}, not {sp.name!r}.")
    choices = raw.get("choices")
    if isinstance(choices, dict) and set(choices) != {d.name for d in sp.decisions}:
        other = space_of_choices(choices)
        if other is not None and other != sp.name:
            raise InputError(f"arch file {path}: its choices are for space {other!r}, not {sp.name!r}.")
    return sp, sp.validate_arch(raw, where=f"arch file {path}")


def arch_from_args(args: argparse.Namespace, *,
                   defaults: Mapping[str, Any] | None = None) -> tuple[SearchSpace, dict[str, Any]]:
    """The space and the validated architecture selected by ``add_arch_args`` arguments.

    Args:
        args: Parsed ``add_arch_args`` arguments; ``--resolution/--width-mult/--num-classes`` win.
        defaults: Settings (``SETTING_FIELDS``) used where neither the flags nor the arch file give
            them, e.g. a latency table's header (``table_defaults``); a preset takes all of them.
    """
    defaults = {k: v for k, v in (defaults or {}).items() if k in SETTING_FIELDS and v is not None}
    if args.preset:
        if not args.space:
            raise InputError("--preset needs --space (the space the preset belongs to).")
        sp = load_space(args.space)
        arch = sp.preset(args.preset, **defaults)
    else:
        sp, arch = load_arch_file(args.arch, space=args.space, defaults=defaults)
    overrides = {"resolution": args.resolution, "width_mult": args.width_mult, "num_classes": args.num_classes}
    if any(v is not None for v in overrides.values()):
        arch = sp.validate_arch({**arch, **{k: v for k, v in overrides.items() if v is not None}},
                                where="command line")
    return sp, arch


def table_defaults(device: Mapping[str, Any]) -> dict[str, Any]:
    """The resolution, width multiplier and class count a latency table's ``device`` header records."""
    return {k: device[k] for k in SETTING_FIELDS if device.get(k) is not None}


def add_distributed_args(p: argparse.ArgumentParser) -> None:
    """``--train-device`` and ``--dist-backend`` (data-parallel runs under ``torchrun``)."""
    g = p.add_argument_group("data parallel (torchrun --nproc_per_node=N -m hwnas ...; --batch-size is per process)")
    g.add_argument("--train-device", choices=TRAIN_DEVICES, default="auto",
                   help="where training runs: auto (a CUDA GPU when one is visible, under torchrun GPU LOCAL_RANK), "
                        "cpu or cuda")
    g.add_argument("--dist-backend", choices=DIST_BACKENDS, default="auto",
                   help="process-group backend under torchrun: auto (nccl on CUDA, gloo on the CPU), gloo or nccl")
    p.set_defaults(data_parallel=True)


def distributed_from_args(args: argparse.Namespace) -> Distributed:
    """This process's ``Distributed`` from the flags of ``add_distributed_args`` and torchrun's variables."""
    return init_distributed(backend=args.dist_backend, device=args.train_device)
