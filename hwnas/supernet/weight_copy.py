"""Copying weights between candidate modules of different sizes: slices, kernel centres, layer pairing.

A smaller block uses the leading channels of every weight and BatchNorm tensor of a larger one and
the centre of its kernels (Once-for-All's elastic width and kernel, Cai et al. 2020, Sec. 3.2). Two
blocks of one structure are paired layer by layer, in module order; a squeeze-excite module is paired
only when both have one (a block without SE takes the layers outside it).
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.space.ops import SqueezeExcite, init_weights

_TENSOR_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def slice_tensor(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The part of a shared tensor a smaller block uses: leading channels, centre of conv kernels."""
    if t.shape == shape:
        return t
    index = []
    for d, (have, want) in enumerate(zip(t.shape, shape)):
        if t.dim() == 4 and d >= 2:  # O, I, kH, kW: centre crop of the kernel
            start = (have - want) // 2
            index.append(slice(start, start + want))
        else:
            index.append(slice(0, want))
    return t[tuple(index)]


def named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a module by name."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    return tensors


def reinit(module: nn.Module) -> None:
    """Re-initializes a block module as ``make_module`` does, BN statistics reset."""
    init_weights(module)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


def _layers(module: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The weight layers of a block module in order: (outside squeeze-excite, inside it)."""
    main: list[nn.Module] = []
    se: list[nn.Module] = []
    for m in module.modules():
        if isinstance(m, SqueezeExcite):
            se += [c for c in m.modules() if isinstance(c, _TENSOR_LAYERS)]
        elif isinstance(m, _TENSOR_LAYERS) and not any(m is c for c in se):
            main.append(m)
    return main, se


def _layer_pairs(dst: nn.Module, src: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    (dst_main, dst_se), (src_main, src_se) = _layers(dst), _layers(src)
    pairs = list(zip(dst_main, src_main, strict=True))
    if dst_se and src_se:
        pairs += list(zip(dst_se, src_se, strict=True))
    return pairs


def tensor_names(dst: nn.Module, src: nn.Module) -> dict[str, str]:
    """Name in ``src`` of the tensor every parameter and buffer of ``dst`` takes its slice of.

    Layers pair in module order, squeeze-excite with squeeze-excite; a ``dst`` without SE skips
    ``src``'s (the same block with SE switched off, so both share all other weights).

    Raises:
        ValueError: when the blocks differ in structure beyond SE, or only ``dst`` has SE.
    """
    if _layers(dst)[1] and not _layers(src)[1]:
        raise ValueError("the destination block has squeeze-excite and the source has none")
    dst_name = {id(m): n for n, m in dst.named_modules()}
    src_name = {id(m): n for n, m in src.named_modules()}
    out = {}
    for d, s in _layer_pairs(dst, src):
        prefix_d, prefix_s = dst_name[id(d)], src_name[id(s)]
        for name in named_tensors(d):
            out[f"{prefix_d}.{name}" if prefix_d else name] = f"{prefix_s}.{name}" if prefix_s else name
    return out


@torch.no_grad()
def copy_slices(dst: nn.Module, src: nn.Module) -> None:
    """``dst``'s weights and BN statistics ← the leading channels / kernel centres of ``src``'s."""
    for d, s in _layer_pairs(dst, src):
        src_t = named_tensors(s)
        for name, t in named_tensors(d).items():
            t.copy_(slice_tensor(src_t[name], t.shape))
