"""Stage 1, the search space: takes a space file (``search_spaces/*.json``) and an architecture
(JSON decisions); gives blocks (``SearchSpace.resolve``), their LUT keys (``op_key``), the one
``nn.Module`` builder (``build_model``) and FLOPs/params (``CostCounter``).
"""

from hwnas.space.arch import ArchSettings, arch_id
from hwnas.space.arch_import import IMPORTERS, OFA_DEFAULT_SPACE
from hwnas.space.blocks import Block, op_key, parse_key
from hwnas.space.bounds import minimize
from hwnas.space.build import HwnasNet, build_model
from hwnas.space.cell_modules import CELL_BLOCK_OPS  # registers the cell-op builders
from hwnas.space.cost import CostCounter
from hwnas.space.loader import SPACES_DIR, load_named_space, load_space, space_names, space_of_choices
from hwnas.space.ops import make_module
from hwnas.space.schema import is_ref
from hwnas.space.search_space import SearchSpace, Slot

__all__ = [
    "ArchSettings",
    "CELL_BLOCK_OPS",
    "Block",
    "CostCounter",
    "HwnasNet",
    "IMPORTERS",
    "OFA_DEFAULT_SPACE",
    "SPACES_DIR",
    "SearchSpace",
    "Slot",
    "arch_id",
    "build_model",
    "is_ref",
    "load_named_space",
    "load_space",
    "make_module",
    "minimize",
    "op_key",
    "parse_key",
    "space_names",
    "space_of_choices",
]
