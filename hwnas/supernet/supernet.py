"""The weight-sharing supernet: one network per space that holds every candidate of every layer.

Each slot of the space (``SearchSpace.slots``) keeps one module per choice of its non-width
decisions (SPOS, Guo et al. 2020, Sec. 3.1: "each choice block holds all candidates, only one is
invoked at a time"); a sampler decides which run. Width decisions (MnasNet's per-block filter
multiplier) share weights by channel slicing: the candidate is built at the largest width, and a
narrower block runs the same structure on the leading slices of every weight and BatchNorm buffer
(as in Once-for-All's elastic width, Cai et al. 2020, Sec. 3.2). A narrower block runs through
``torch.func.functional_call`` on a parameter-free template of its exact shape, so extracting a path
(``extract``) gives a standalone model with exactly the same computation.

Weight sharing between candidates (``sharing``):

* ``separate`` (the papers' supernet: SPOS, FairNAS, ProxylessNAS, MSG-DAS): one module per choice
  of the weight-changing decisions; only width, depth and shortcut choices share weights.
* ``entangled``: candidates of a slot with the same structure share one module built at the largest
  kernel, expansion, width and squeeze-excite; a smaller kernel uses the centre crop and a smaller
  expansion the leading channels (Once-for-All's elastic kernel and width, Cai et al. 2020, Sec. 3.2,
  without the kernel transformation matrices), and a block without SE runs the same weights with SE
  switched off (TuNAS, Bender et al. 2020, shares a layer's weights between its SE choices). Measured here: with separate candidates, uniform-path training
  needs far more steps than CPU-sized runs afford (MobileNetV2 space on digits at 32 px: 11% train
  accuracy after 220 steps, where one fixed path reaches 99%); entangled candidates reach 86%.

Why separate candidates do not learn in short runs (issue 16; MobileNetV2 space, digits, 32 px, lr
0.05): the supernet itself computes what the stand-alone network does (same activation scale per
block, same weight statistics, exact extraction; one fixed path trained inside it reaches 97% in 55
steps). Varying one layer's candidate learns (85% in 55 steps for the last, shortcut-free layer),
varying the 6 shortcut-free stage-first layers together does not (14%): the candidates of such a
layer compute unrelated features (cosine similarity 0.00 of their outputs) and each is trained on
1/6 of the steps, so the choices compound. Neither a lower learning rate (0.01: 11%, loss flat at
2.4) nor initializing the candidates as slices of one module (``initialize("aligned")``: 10%) fixes
it; training the candidates shared first and splitting them (``SupernetTrainConfig.shared_epochs``,
Few-shot NAS) does: 90% after 220 steps, 10 of them epochs shared.

Why the ``mnasnet`` space did not learn even entangled (issue 16; digits, 32 px, 4 epochs = 44 steps,
every other decision fixed at MnasNet-B1): one fixed path reaches 93% train accuracy; varying only
the kernels 89%, the depths 88%, the widths 77%, the shortcuts 44%, but varying only SE 11% while SE
choices were separate modules, 91% since they share weights (above). Op types (conv, sepconv,
MBConv) have no weights in common and stay separate modules in every sharing mode: varying only the
op among two of them per block stays at chance (conv/MBConv6 15%, sepconv/MBConv 16%), and so does the
whole space (11% after 10 epochs). Block-wise distillation of the other op types onto the MBConv
path's features (DNA, Li et al. 2020) did not change that in 7 epochs (9%).

SPOS (uniform), FairNAS (strict fairness), ProxylessNAS (binary gates) and MSG-DAS (Gumbel-TopK)
differ in how they choose paths and update weights, not in the supernet.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from hwnas.space import Block, HwnasNet, SearchSpace, Slot, build_model, is_ref, make_module
from hwnas.space.wiring import Registers, forward, is_wired
from hwnas.supernet.weight_copy import copy_slices
from hwnas.supernet.weight_copy import named_tensors as _named_tensors
from hwnas.supernet.weight_copy import reinit
from hwnas.supernet.weight_copy import slice_tensor as _slice
from hwnas.supernet.weight_copy import tensor_names

_CHANNEL_FIELDS = ("cin", "cout", "mid", "se", "proj", "kernel")
SHARING = ("separate", "entangled")
#: How candidate modules start (``SuperNet.initialize``).
CANDIDATE_INIT = ("independent", "aligned")


def weight_neutral_decisions(space: SearchSpace) -> set[int]:
    """Indices of the decisions that do not select different weights: stage widths (shared by channel
    slicing), stage depths (a layer keeps its weights whatever the depth, as in Once-for-All's
    elastic depth) and identity-shortcut switches (``skip`` fields, no parameters)."""
    idx = {d.name: i for i, d in enumerate(space.decisions)}
    refs = set()
    for s in space.spec.stages:
        refs |= {v for v in (s.width, s.depth, s.defaults.get("skip")) if is_ref(v)}
        refs |= {t["skip"] for t in s.layers if is_ref(t.get("skip"))}
    return {idx[r[1:]] for r in refs}


def _largest(blocks: Sequence[Block]) -> Block:
    widest = {f: max(getattr(b, f) for b in blocks) for f in _CHANNEL_FIELDS}
    gate = next((b.se_gate for b in blocks if b.se > 0), blocks[0].se_gate)
    return dataclasses.replace(blocks[0], se_gate=gate, **widest)


def _structure(block: Block) -> Block:
    """What entangled candidates must share: everything but channel counts, kernel, SE and shortcut.

    A block without squeeze-excite runs the same weights as one with it, SE switched off (TuNAS,
    Bender et al. 2020, Sec. 4.1, shares the other weights of a layer between its SE and no-SE
    choices)."""
    return dataclasses.replace(block, cin=0, cout=0, mid=int(block.mid == block.cin), se=0, se_gate="", proj=0,
                               kernel=0, residual=False, slot="")


def combo_weight(weights: Sequence[torch.Tensor], decisions: Sequence[int], combo: Sequence[int]) -> torch.Tensor:
    """``Π_k weights[decisions[k]][combo[k]]``: the weight of one step of a slot (a combination of its
    decisions' options) under per-decision weight vectors; ``decisions`` must not be empty."""
    w = weights[decisions[0]][combo[0]]
    for d, o in zip(decisions[1:], combo[1:]):
        w = w * weights[d][o]
    return w


def _is_edge(gkey: Any) -> bool:
    return isinstance(gkey, tuple) and gkey[:1] == ("edge",)


@dataclasses.dataclass(frozen=True)
class Step:
    """One block of a path: the shared candidate that computes it (``None`` for identity)."""

    block: Block
    slot: int
    candidate: str | None


class SuperNet(nn.Module):
    """Weight-sharing supernet of ``space`` at one resolution, width multiplier and class count.

    Args:
        space: The search space.
        resolution: Input side, pixels.
        width_mult: Global width multiplier.
        num_classes: Classifier outputs.
        sharing: ``separate`` or ``entangled`` candidates (see the module docstring).
        init: How the candidates start (``initialize``): ``independent`` (the papers) or ``aligned``.
    """

    def __init__(self, space: SearchSpace, *, resolution: int, width_mult: float = 1.0, num_classes: int,
                 sharing: str = "separate", init: str = "independent") -> None:
        super().__init__()
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {sharing!r}")
        self.space = space
        self.resolution, self.width_mult, self.num_classes = resolution, width_mult, num_classes
        self.sharing = sharing
        self.slots: list[Slot] = space.slots()
        neutral = weight_neutral_decisions(space)
        self.candidates = nn.ModuleDict()
        # per slot: decision-option combo → Step (the exact block and the candidate that runs it)
        self._plan: list[dict[tuple[int, ...], Step | None]] = []
        self._big: dict[str, Block] = {}
        edge_names: dict[Any, str] = {}  # cell edges: (src, dst, block) → candidate, shared across slots
        for si, slot in enumerate(self.slots):
            table = space.slot_blocks(slot, resolution=resolution, width_mult=width_mult, num_classes=num_classes)
            op_pos = [p for p, d in enumerate(slot.decisions) if d not in neutral]

            def group(combo: tuple[int, ...], block: Block, op_pos=op_pos):
                if block.dst and slot.decisions:  # a cell edge: one module per (source, destination, op)
                    return ("edge", block.src, block.dst, block)
                return tuple(combo[p] for p in op_pos) if sharing == "separate" else _structure(block)

            groups: dict[Any, list[Block]] = {}
            for combo, block in table.items():
                if block is not None and block.op != "skip":
                    groups.setdefault(group(combo, block), []).append(block)
            names = {}
            for i, (gkey, blocks) in enumerate(groups.items()):
                if _is_edge(gkey) and gkey in edge_names:
                    names[gkey] = edge_names[gkey]
                    continue
                tag = "_".join(map(str, gkey)) if sharing == "separate" and not _is_edge(gkey) else str(i)
                name = f"s{si}_o{tag}"
                big = _largest(blocks)
                self.candidates[name] = make_module(big)
                self._big[name] = big
                names[gkey] = name
                if _is_edge(gkey):
                    edge_names[gkey] = name
            plan: dict[tuple[int, ...], Step | None] = {}
            for combo, block in table.items():
                if block is None:
                    plan[combo] = None
                elif block.op == "skip":
                    plan[combo] = Step(block, si, None)
                else:
                    plan[combo] = Step(block, si, names[group(combo, block)])
            self._plan.append(plan)
        self.wired = is_wired([s.block for p in self._plan for s in p.values() if s is not None])
        self._templates: dict[Block, tuple[nn.Module, list[tuple[nn.Module, nn.Module]], dict[str, str]]] = {}
        self.init = "independent"
        if init != "independent":
            self.initialize(init)

    # ---- initialization --------------------------------------------------------------------

    def initialize(self, mode: str) -> None:
        """(Re-)initializes the searched candidates: ``independent`` or ``aligned``.

        ``independent``: every candidate module freshly initialized on its own (``make_module``), as in
        SPOS, FairNAS and ProxylessNAS. Measured here (issue 16): the candidates of a layer without an
        identity shortcut then compute unrelated features (mean cosine similarity of their outputs on
        one input 0.00), so the layers after it see a different random basis at every step.

        ``aligned``: the candidates of a slot that differ only in kernel, expansion, width or SE start
        as slices of one module built at the largest of them (leading channels, kernel centres, the
        layers outside SE; Once-for-All's elastic kernel and width, Cai et al. 2020, Sec. 3.2, used for
        the initialization only, and Few-shot NAS's sub-supernets that start from the weights of the
        one-shot supernet, Zhao et al. 2021, Sec. 3.2). They then train as separate parameters, so the
        supernet's sharing is unchanged; only where they start is. Uses the global torch generator.
        Measured: it raises the similarity of stage-first candidates to 0.5-0.8 at the start but not
        the training accuracy (MobileNetV2 space, digits, 220 steps: 10% vs 11%); see ``inherit``.

        Raises:
            ValueError: for an unknown mode.
        """
        if mode not in CANDIDATE_INIT:
            raise ValueError(f"init must be one of {CANDIDATE_INIT}, got {mode!r}")
        for si, plan in enumerate(self._plan):
            names = list(dict.fromkeys(s.candidate for s in plan.values() if s is not None and s.candidate))
            if len(names) < 2:
                continue
            groups: dict[Block, list[str]] = {}
            for n in names:
                groups.setdefault(_structure(self._big[n]) if mode == "aligned" else n, []).append(n)
            for members in groups.values():
                if mode == "independent":
                    reinit(self.candidates[members[0]])
                    continue
                big = _largest([self._big[n] for n in members])
                source = next((self.candidates[n] for n in members if self._big[n] == big), None)
                if source is None:
                    source = make_module(big).to(memory_format=torch.channels_last)
                for n in members:
                    if self.candidates[n] is not source:
                        copy_slices(self.candidates[n], source)
        self.init = mode

    @torch.no_grad()
    def inherit(self, other: "SuperNet") -> None:
        """Every candidate ← the slices of the candidate that computes its blocks in ``other``.

        ``other`` is a supernet of the same space and settings with more sharing (``entangled``):
        splitting it into this one's candidates is Few-shot NAS's weight transfer from the one-shot
        supernet to its sub-supernets (Zhao et al. 2021, Sec. 3.2). BN statistics are copied too.
        """
        mine = (self.space.spec, self.resolution, self.width_mult, self.num_classes)
        if (other.space.spec, other.resolution, other.width_mult, other.num_classes) != mine:
            raise ValueError("inherit: the supernets differ in space, resolution, width or classes")
        done: set[str] = set()
        for plan, theirs in zip(self._plan, other._plan, strict=True):
            for combo, step in plan.items():
                if step is None or step.candidate is None or step.candidate in done:
                    continue
                source = theirs[combo]
                copy_slices(self.candidates[step.candidate], other.candidates[source.candidate])
                done.add(step.candidate)

    # ---- paths -----------------------------------------------------------------------------

    def indices(self, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> np.ndarray:
        """Option indices of an arch dict (validated) or an index vector."""
        if isinstance(arch, Mapping):
            return self.space.encode(self.space.validate_arch(dict(arch)))
        return np.asarray(arch, dtype=np.int64)

    def path(self, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> list[Step]:
        """The steps of an architecture's path, stem to classifier."""
        idx = self.indices(arch)
        dead = self.space.dead_slots(idx)
        steps = []
        for si, (slot, plan) in enumerate(zip(self.slots, self._plan)):
            step = plan[tuple(int(idx[d]) for d in slot.decisions)]
            if step is not None and si not in dead:
                steps.append(step)
        return steps

    def slot_steps(self, slot: int) -> dict[tuple[int, ...], Step | None]:
        """Every step a slot can take, by option indices of ``slots[slot].decisions``."""
        return self._plan[slot]

    def run_step(self, step: Step, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """Runs one block of a path with the shared weights (``more``: a ``concat`` block's other inputs)."""
        if step.candidate is None:
            return x
        module = self.candidates[step.candidate]
        if step.block == self._big[step.candidate]:
            return module(x, *more)
        template, bn_pairs, names = self._template(step.block, module)
        template.train(module.training)
        for t_bn, s_bn in bn_pairs:
            t_bn.momentum = s_bn.momentum
            t_bn.__class__ = type(s_bn)  # a BatchNorm over all processes in a data-parallel loop
        shared = _named_tensors(module)
        tensors = {k: _slice(shared[names[k]], v.shape) for k, v in _named_tensors(template).items()}
        return functional_call(template, tensors, (x,))

    def forward(self, x: torch.Tensor, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> torch.Tensor:
        """Logits of one path: N, 3, R, R → N, classes."""
        return self.run_steps(self.path(arch), x)

    def run_steps(self, steps: Sequence[Step], x: torch.Tensor) -> torch.Tensor:
        """Runs a path's steps on ``x``: along the chain, or through a cell network's registers."""
        return forward([s.block for s in steps], [functools.partial(self.run_step, s) for s in steps], x,
                       wired=self.wired)

    def weighted_forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor], *,
                         compute: Sequence[Sequence[int]] | None = None,
                         identity_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Forward with a weight vector per decision; each slot outputs the weighted sum of its steps.

        A step of slot s (a combination c of the options of its decisions) gets the weight
        ``Π_{d ∈ s.decisions} weights[d][c_d]``. Only the options in ``compute[d]`` are computed
        (default: those with a non-zero weight), so a zero-weight option can still be run to get the
        gradient of its gate (ProxylessNAS computes both sampled paths in an architecture step).
        With one-hot weights this is one path, and the weights' gradients are ProxylessNAS's
        binary-gate gradients (Cai et al. 2019, Sec. 3.2.1, Eq. 4); with straight-through one-hot
        samples it is GDAS / MSG-DAS (Sec. 3.1); with softmax probabilities it is the DARTS mixed op
        (Liu et al. 2019, Eq. 2). A cut layer (depth decision) is the identity.

        Args:
            x: Input images, N, 3, R, R.
            weights: ``weights[d]``, shape (num_options[d],), for every decision d.
            compute: ``compute[d]``: option indices of decision d to run.
            identity_fn: Applied to the output of every identity step of a searched slot (a ``skip``
                option or a layer cut by a depth decision), e.g. MSG-DAS's DropBlock-identity
                (Tan et al. 2021, Sec. 3.2, Eq. 4); default: the identity stays ``x``.

        Raises:
            ValueError: when steps of one slot produce different shapes (mixing over width decisions).
        """
        if len(weights) != len(self.space.decisions):
            raise ValueError(f"expected {len(self.space.decisions)} weight vectors, got {len(weights)}")
        nonzero = ([list(c) for c in compute] if compute is not None
                   else [torch.nonzero(w.detach() != 0).flatten().tolist() for w in weights])
        regs = Registers(x) if self.wired else None
        for slot, plan in zip(self.slots, self._plan):
            if regs is not None:
                self._weighted_cell_slot(regs, slot, plan, weights, nonzero, identity_fn)
                continue
            if not slot.decisions:
                step = plan[()]
                x = x if step is None else self.run_step(step, x)
                continue
            out: torch.Tensor | None = None
            for combo in itertools.product(*(nonzero[d] for d in slot.decisions)):
                w = combo_weight(weights, slot.decisions, combo)
                step = plan[combo]
                y = x if step is None else self.run_step(step, x)
                if identity_fn is not None and (step is None or step.candidate is None):
                    y = identity_fn(y)
                if out is not None and y.shape != out.shape:
                    raise ValueError(f"slot {slot.name}: candidates of different shapes cannot be mixed "
                                     f"({tuple(y.shape)} vs {tuple(out.shape)}); fix width decisions first")
                out = w * y if out is None else out + w * y
            x = out if out is not None else x
        return regs.x if regs is not None else x

    def _weighted_cell_slot(self, regs: Registers, slot: Slot, plan: dict[tuple[int, ...], Step | None],
                            weights: Sequence[torch.Tensor], nonzero: Sequence[Sequence[int]],
                            identity_fn: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """One slot of a cell network under weights: the weighted sum of its steps, added into their
        node. A ``none`` option contributes zeros (DARTS's zero op, Liu et al. 2019, Sec. 2.1), and so
        does an edge whose source node nothing wrote."""
        if not slot.decisions:
            step = plan[()]
            if step is not None:
                regs.run(step.block, lambda *ins: self.run_step(step, *ins))
            return
        out: torch.Tensor | None = None
        target: Block | None = None
        for combo in itertools.product(*(nonzero[d] for d in slot.decisions)):
            step = plan[combo]
            if step is None:
                continue
            ins = regs.inputs(step.block)
            if ins is None:
                continue
            w = combo_weight(weights, slot.decisions, combo)
            y = self.run_step(step, *ins)
            if identity_fn is not None and step.candidate is None:
                y = identity_fn(y)
            out = w * y if out is None else out + w * y
            target = step.block
        if out is not None and target is not None:
            regs.write(target, out)

    def path_candidates(self, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> list[str]:
        """Names of the candidate modules an architecture's path uses."""
        return [s.candidate for s in self.path(arch) if s.candidate is not None]

    # ---- extraction ------------------------------------------------------------------------

    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> HwnasNet:
        """A standalone network of the path with the inherited (sliced) weights and BN statistics."""
        steps = self.path(arch)
        model = build_model([s.block for s in steps])
        for step, block_module in zip(steps, model.blocks):
            if step.candidate is None:
                continue
            source = self.candidates[step.candidate]
            shared = _named_tensors(source)
            names = tensor_names(block_module, source)
            for name, t in _named_tensors(block_module).items():
                t.copy_(_slice(shared[names[name]], t.shape))
        model.train(self.training)
        return model

    def _template(self, block: Block, module: nn.Module):
        hit = self._templates.get(block)
        if hit is None:
            with torch.device("meta"):
                template = make_module(block)
            names = tensor_names(template, module)
            shared_modules = dict(module.named_modules())
            pairs = [(m, shared_modules[names[next(k for k in names if k.startswith(f"{n}."))].rsplit(".", 1)[0]])
                     for n, m in template.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            hit = (template, pairs, names)
            self._templates[block] = hit
        return hit


class PathModel(nn.Module):
    """One fixed path of a supernet as an ``nn.Module`` (for evaluation and BN recalibration)."""

    def __init__(self, supernet: SuperNet, arch: Mapping[str, Any] | np.ndarray | Sequence[int]) -> None:
        super().__init__()
        self.supernet = supernet
        self.steps = supernet.path(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.run_steps(self.steps, x)
