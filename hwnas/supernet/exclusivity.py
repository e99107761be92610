"""Counting how the paths of one training step share candidate modules of a supernet.

Two algorithms depend on it. MSG-DAS's K sub-graphs of one step must be mutually exclusive: the
same operation of a layer is never chosen twice (Tan et al. 2021, Sec. 3.1, Eq. 2), so that no weight
is updated twice in one iteration. FairNAS's m paths of one step must train every candidate exactly
once (strict fairness, Chu et al. 2021, Sec. 3.2, Fig. 2). Both hold at the level of options; they
hold at the level of weights only when distinct options run distinct modules, which ``separate``
sharing guarantees and ``entangled`` sharing does not (one module per layer and structure; a smaller
kernel or expansion is a slice of it). These counts make the property testable, and justify the
strategies' refusal of ``--weight-sharing entangled``.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from hwnas.supernet.supernet import SuperNet, weight_neutral_decisions


def _searched_slots(supernet: SuperNet) -> list[tuple[int, list[int]]]:
    """(slot index, positions of its weight-changing decisions) for slots that have at least one."""
    neutral = weight_neutral_decisions(supernet.space)
    out = []
    for si, slot in enumerate(supernet.slots):
        pos = [p for p, d in enumerate(slot.decisions) if d not in neutral]
        if pos:
            out.append((si, pos))
    return out


def module_uses(supernet: SuperNet, paths: np.ndarray | Sequence[Sequence[int]]) -> Counter:
    """How many of ``paths`` run each candidate module of the searched slots.

    A searched slot has at least one weight-changing decision (operation, kernel, expansion; not
    width, depth or shortcut, see ``weight_neutral_decisions``). Stem, head and slots whose only
    decisions are weight-neutral are left out: every path runs them by design. Identity steps
    (``skip`` options, layers cut by a depth decision) run no module and are not counted.

    Args:
        supernet: The supernet.
        paths: Option indices, shape (m, num_decisions), the paths of one step.

    Returns:
        Candidate module name → number of paths that run it.
    """
    searched = {si for si, _ in _searched_slots(supernet)}
    uses: Counter = Counter()
    for row in np.asarray(paths, dtype=np.int64):
        for step in supernet.path(row):
            if step.candidate is not None and step.slot in searched:
                uses[step.candidate] += 1
    return uses


def shared_modules(supernet: SuperNet, paths: np.ndarray | Sequence[Sequence[int]]) -> int:
    """Candidate modules run by two or more of ``paths`` that choose different options at their slot.

    Per searched slot, paths are grouped by their options of the slot's weight-changing decisions
    (paths with the same options share the module legitimately, e.g. FairNAS's repeats when a
    decision has fewer options than the step has paths); a module that serves two or more
    distinct option combinations is counted once per slot. The count is 0 for any paths when each
    combination has its own module (``separate`` sharing); MSG-DAS's exclusive sub-graphs and
    FairNAS's permuted paths then share no weights of a searched layer.

    Args:
        supernet: The supernet.
        paths: Option indices, shape (m, num_decisions), the paths of one step.

    Returns:
        The number of (slot, module) pairs that distinct option combinations share.
    """
    rows = np.asarray(paths, dtype=np.int64)
    total = 0
    for si, pos in _searched_slots(supernet):
        decisions = supernet.slots[si].decisions
        plan = supernet.slot_steps(si)
        combos: dict[str, set[tuple[int, ...]]] = {}
        for row in rows:
            full = tuple(int(row[d]) for d in decisions)
            step = plan[full]
            if step is not None and step.candidate is not None:
                combos.setdefault(step.candidate, set()).add(tuple(full[p] for p in pos))
        total += sum(1 for c in combos.values() if len(c) > 1)
    return total
