"""Cell search spaces, the model layer: NAS-Bench-201 (Dong & Yang, ICLR 2020) and the DARTS CNN
space (Liu et al., ICLR 2019): cell encodings, dead-edge analysis, candidate ops and networks.

A cell edge whose op is ``none``, or that lies on no path from the cell input to its output, is
dead: it is not built, has no parameters or FLOPs and is not run (DESIGN: cell spaces).
"""

from hwnas.space.cells.cost import flops, params
from hwnas.space.cells.darts_genotype import (
    DARTS_OPS,
    DARTS_PRESETS,
    DARTS_V1,
    DARTS_V2,
    DartsGenotype,
    darts_live_edges,
)
from hwnas.space.cells.darts_net import DartsCell, DartsNet
from hwnas.space.cells.nb201 import (
    EDGES,
    NB201_OPS,
    NUM_CELLS,
    all_cells,
    format_nb201,
    live_edges,
    parse_nb201,
)
from hwnas.space.cells.nb201_net import NB201Cell, NB201Net, ResNetBasicBlock
from hwnas.space.cells.ops import CELL_OPS, FactorizedReduce, ReLUConvBN, make_op, register_op

__all__ = [
    "CELL_OPS",
    "DARTS_OPS",
    "DARTS_PRESETS",
    "DARTS_V1",
    "DARTS_V2",
    "DartsCell",
    "DartsGenotype",
    "DartsNet",
    "EDGES",
    "FactorizedReduce",
    "NB201Cell",
    "NB201Net",
    "NB201_OPS",
    "NUM_CELLS",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "all_cells",
    "darts_live_edges",
    "flops",
    "format_nb201",
    "live_edges",
    "make_op",
    "params",
    "parse_nb201",
    "register_op",
]
