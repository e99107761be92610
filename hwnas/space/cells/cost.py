"""Parameter and FLOP counts of the cell networks (``NB201Net``, ``DartsNet``).

Dead edges are never built, so counting the built module counts exactly the live architecture.
FLOPs follow the rest of hwnas (``hwnas.space.cost``): fvcore, one multiply-add counted once.
"""

from __future__ import annotations

import torch
from torch import nn

from hwnas.space.build import count_params
from hwnas.space.cost import fvcore_flops


def params(net: nn.Module) -> int:
    """Number of parameters of ``net`` (every tensor in ``net.parameters()``)."""
    return count_params(net)


def flops(net: nn.Module, *, resolution: int = 32, channels: int = 3) -> int:
    """fvcore FLOPs (multiply-adds) of ``net`` on one ``channels`` × ``resolution`` × ``resolution`` image."""
    return fvcore_flops(net, torch.zeros(1, channels, resolution, resolution))
