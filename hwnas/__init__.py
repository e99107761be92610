"""hwnas: hardware-aware neural architecture search for mobile vision models.

Data flow (see README.md): a search space (JSON) declares decisions; an architecture is a JSON
object of choices; ``SearchSpace.resolve`` turns it into concrete blocks; ``build_model`` turns
blocks into an ``nn.Module``; ``op_key`` names a block in a latency lookup table; ``CostCounter``
counts its FLOPs and parameters.
"""

__version__ = "0.1.0"
