"""The supernet ranking check: does a supernet rank architectures as stand-alone training does?

A weight-sharing search is only as good as the ranking its supernet gives: Yu et al. ("Evaluating
the search phase of neural architecture search", ICLR 2020, Sec. 4) measure it as the Kendall tau
between the accuracies of sampled architectures with inherited weights and trained from scratch, and
FairNAS (Chu et al., ICCV 2021, Fig. 1) shows how path sampling changes that tau. This check does
the same on one supernet:

1. the supernet comes from a finished search run (its ``checkpoint.pt`` weights and ``config.json``
   settings) or is trained here with uniform single paths (SPOS, Guo et al. 2020, Sec. 3.2);
2. N architectures are drawn stratified over the space's predicted latency (a seeded pool of random
   architectures, split into N quantile bins of predicted latency, one distinct network per bin);
3. each is scored with inherited weights, BN recalibrated (``SupernetEvaluator.score``), and trained
   stand-alone from scratch with one short, fixed, seeded recipe (``hwnas.train.train_arch``);
4. the two accuracies are compared: Kendall tau-b, Spearman rho, top-5 overlap (``ranking``).

Run folder (``--out DIR``), every file written atomically::

    DIR/config.json            resolved settings (``RunDir``; a resume must match them)
    DIR/supernet/              the supernet trained here: its own run folder, checkpoint.pt
    DIR/sample.json            the N architectures with their predicted latency, ms
    DIR/supernet_scores.json   their accuracies with inherited weights
    DIR/standalone/NN/         stand-alone training run of architecture NN (``hwnas train``'s folder)
    DIR/standalone/NN.json     its result, written as soon as it finishes
    DIR/ranking.json           the report; DIR/ranking.png the scatter plot

A resumed check reuses every finished file and continues an unfinished stand-alone run from its
last epoch checkpoint. With a stand-alone cache (``standalone_cache``, ``--standalone-cache DIR``), the
stand-alone runs live in ``DIR/<digest>/`` and ``DIR/<digest>.json``, the digest naming the
architecture and the stand-alone recipe, so checks of other supernets on the same sample train each
architecture once.

Under ``torchrun`` (``dist``): the supernet trains data-parallel (``train_supernet``), the N scores
are shared out among the processes (``SupernetEvaluator.score_many``), and each stand-alone network
trains data-parallel too (``train_arch``); rank 0 decides what is already done and writes every file.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from hwnas.errors import InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.rankstats import kendall_tau, spearman, top_k_overlap
from hwnas.space import ArchSettings, SearchSpace, arch_id, load_space
from hwnas.supernet.evaluator import SupernetEvaluator
from hwnas.supernet.rank_plot import rank_scatter
from hwnas.supernet.samplers import uniform_paths
from hwnas.supernet.supernet import SHARING, SuperNet
from hwnas.supernet.training import SupernetTrainConfig, train_supernet
from hwnas.train import (SINGLE_PROCESS, Dataset, Distributed, RunDir, TrainConfig, load_checkpoint, load_dataset,
                         train_arch)

#: Size of the top-k overlap (|top-k by supernet ∩ top-k stand-alone| / k, k = min(5, n)).
TOP_K = 5


@dataclass(frozen=True)
class SupernetSource:
    """Where the supernet comes from: a finished search run (``run``) or trained here (``train``).

    Attributes:
        space: Search space name or file.
        table: Latency table (predicted latency of the sampled architectures).
        data: Dataset spec (``hwnas.train.load_dataset``).
        data_limit: At most this many examples per split; None for all.
        resolution: Input side, pixels (None: the table's, else the space's).
        width_mult: Width multiplier (None: the table's, else 1).
        weight_sharing: ``separate`` or ``entangled`` supernet candidates (``SuperNet``).
        seed: Seed of the supernet's data split, initialization and paths.
        bn_batches: Training batches that recalibrate BN before a path is scored.
        run: The search run folder the weights come from (exclusive with ``train``).
        train: Supernet training settings when trained here.
    """

    space: str
    table: str
    data: str = "digits"
    data_limit: int | None = None
    resolution: int | None = None
    width_mult: float | None = None
    weight_sharing: str = "separate"
    seed: int = 0
    bn_batches: int = 4
    run: str | None = None
    train: SupernetTrainConfig | None = None


@dataclass(frozen=True)
class RankCheckConfig:
    """Settings of the check itself.

    Attributes:
        archs: Architectures to sample, score and train (N ≥ 3).
        epochs: Stand-alone training epochs of each architecture.
        seed: Seed of the sample and of every stand-alone run.
        pool: Random architectures drawn to find the latency quantiles (≥ N).
        batch_size: Stand-alone batch size.
        lr: Stand-alone peak SGD learning rate (cosine schedule).
    """

    archs: int = 10
    epochs: int = 1
    seed: int = 0
    pool: int = 1000
    batch_size: int = 64
    lr: float = 0.05

    def validate(self) -> None:
        """Raises ``InputError`` naming the first out-of-range setting."""
        if self.archs < 3:
            raise InputError(f"--archs must be at least 3 (a rank correlation needs 3 architectures), got {self.archs}.")
        if self.pool < self.archs:
            raise InputError(f"--pool must be at least --archs ({self.archs}), got {self.pool}.")
        if self.epochs < 1:
            raise InputError(f"--epochs must be a positive integer, got {self.epochs}.")


def source_from_run(path: str | Path, *, table: str | None = None) -> SupernetSource:
    """The supernet settings of a finished ``hwnas search`` run folder.

    Args:
        path: The run folder (``config.json``, ``summary.json``, ``checkpoint.pt``).
        table: Another latency table than the run's (e.g. when the run's was moved).

    Raises:
        InputError: naming ``--run`` when the folder is not a finished search run.
    """
    p = Path(path)
    if not (p / "config.json").is_file():
        raise InputError(f"--run {p} is not a search run folder (no config.json).")
    if not (p / "summary.json").is_file() or not (p / "checkpoint.pt").is_file():
        raise InputError(f"--run {p} is not a finished search run (no summary.json or checkpoint.pt); finish it "
                         f"with hwnas search --resume first.")
    cfg = read_json(p / "config.json", what="search run config")
    resolved = cfg.get("resolved") if isinstance(cfg, dict) else None
    if not isinstance(resolved, dict) or not all(isinstance(cfg.get(k), str) for k in ("space", "table", "data")):
        raise InputError(f"--run {p}: its config.json is not a hwnas search config (fields space, table, data, resolved).")
    return SupernetSource(space=cfg["space"], table=table or cfg["table"], data=cfg["data"],
                          data_limit=cfg.get("data_limit"), resolution=resolved.get("resolution"),
                          width_mult=resolved.get("width_mult"), weight_sharing=cfg.get("weight_sharing", "separate"),
                          seed=int(cfg.get("seed", 0)), bn_batches=int(cfg.get("bn_batches", 4)), run=str(p))


def _setting(table: LatencyTable, key: str, given: Any, default: Any) -> Any:
    have = table.device.get(key)
    if given is not None and have is not None and float(given) != float(have):
        raise InputError(f"--{key.replace('_', '-')} is {given}, but latency table {table.path} was profiled at "
                         f"{have}; use a table for these settings.")
    return given if given is not None else (have if have is not None else default)


def stratified_sample(space: SearchSpace, predictor: BatchPredictor, *, n: int, pool: int, seed: int,
                      settings: ArchSettings) -> list[dict[str, Any]]:
    """N distinct networks spread over the space's predicted latency, deterministic for a seed.

    ``pool`` uniformly random architectures are sorted by predicted latency (ms) and split into N
    bins of equal count (latency quantiles); from each bin, in a seeded random order, the first
    network not already taken is kept.

    Returns:
        Per architecture, by increasing latency: ``index``, ``indices`` (option indices of the
        canonical form), ``arch`` and ``predicted_latency_ms``.

    Raises:
        InputError: when a bin holds no new network (a space with fewer than about N networks).
    """
    rng = np.random.default_rng([seed, 0x52414E4B])  # stream "RANK": independent of training draws
    options = np.asarray(space.num_options, dtype=np.int64)
    drawn = (rng.random((pool, options.size)) * options).astype(np.int64)  # pool, decisions
    latency = predictor.latency(drawn)  # ms, (pool,)
    order = np.argsort(latency, kind="mergesort")
    taken: set[str] = set()
    out = []
    for bin_members in np.array_split(order, n):
        for j in rng.permutation(bin_members):
            arch = space.canonical(space.decode(drawn[j], resolution=settings.resolution,
                                                width_mult=settings.width_mult, num_classes=settings.num_classes))
            key = arch_id(space, arch)
            if key not in taken:
                taken.add(key)
                idx = space.encode(arch)
                out.append({"index": len(out), "indices": [int(i) for i in idx], "arch": arch,
                            "predicted_latency_ms": float(predictor.latency(idx[None])[0])})
                break
        else:
            raise InputError(f"--archs {n}: a latency bin of space {space.name} holds no network not already "
                             f"sampled; use fewer architectures.")
    return out


class _Prepared:
    """Everything loaded and checked before the run folder is touched."""

    def __init__(self, source: SupernetSource, config: RankCheckConfig) -> None:
        config.validate()
        if source.weight_sharing not in SHARING:
            raise InputError(f"--weight-sharing must be one of {', '.join(SHARING)}, got {source.weight_sharing!r}.")
        self.space = load_space(source.space)
        if not Path(source.table).is_file():
            raise InputError(f"--table {source.table} does not exist.")
        self.table = LatencyTable.load(source.table)
        model = LatencyModel.load(source.table)
        resolution = int(_setting(self.table, "resolution", source.resolution, self.space.spec.resolution))
        width_mult = float(_setting(self.table, "width_mult", source.width_mult, 1.0))
        self.table.check_resolution(resolution)
        self.ds: Dataset = load_dataset(source.data, seed=source.seed, limit=source.data_limit)
        self.settings = ArchSettings(resolution=resolution, width_mult=width_mult, num_classes=self.ds.num_classes)
        self.predictor = BatchPredictor.build(model, self.space, resolution=resolution, width_mult=width_mult,
                                              num_classes=self.ds.num_classes)
        self.run_state = None
        if source.run is not None:
            state = load_checkpoint(Path(source.run) / "checkpoint.pt", what="--run checkpoint")
            if not isinstance(state, dict) or not isinstance(state.get("supernet"), dict):
                raise InputError(f"--run {source.run}: its checkpoint holds no supernet weights (a search without "
                                 f"weight training, e.g. mnasnet with --accuracy proxy).")
            self.run_state = state["supernet"]
        self.train_config = TrainConfig(data=source.data, epochs=config.epochs, batch_size=config.batch_size,
                                        lr=config.lr, seed=config.seed, data_limit=source.data_limit)
        self.train_config.validate()
        self.sample = stratified_sample(self.space, self.predictor, n=config.archs, pool=config.pool,
                                        seed=config.seed, settings=self.settings)

    def supernet(self, source: SupernetSource) -> SuperNet:
        torch.manual_seed(source.seed)
        s = self.settings
        net = SuperNet(self.space, resolution=s.resolution, width_mult=s.width_mult, num_classes=s.num_classes,
                       sharing=source.weight_sharing)
        return net.to(memory_format=torch.channels_last)  # moved to the training device by the caller


def _load_run_weights(net: SuperNet, weights: dict[str, Any], run: str) -> None:
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["mismatch"])[0][:160]
        raise InputError(f"--run {run}: its supernet weights do not fit the space and settings of its "
                         f"config.json ({first}).") from None


def _trained_supernet(prep: _Prepared, source: SupernetSource, folder: Path, dist: Distributed) -> SuperNet:
    """The supernet trained in ``folder`` (continued from its checkpoint; none repeated once done)."""
    net = prep.supernet(source).to(dist.device)
    train = source.train or SupernetTrainConfig()
    run = RunDir(folder, config={"source": asdict(source)}, resume=(folder / "config.json").exists(), dist=dist)
    state = run.load_checkpoint()
    if state is not None and "supernet" in state:
        net.load_state_dict(state["supernet"])
    train_supernet(net, prep.ds, uniform_paths(prep.space), config=train, seed=source.seed, run=run, state=state)
    return net


def standalone_digest(arch: dict[str, Any], config: TrainConfig) -> str:
    """The name of a stand-alone run in a cache: a digest of the architecture and the recipe."""
    text = json.dumps({"arch": arch, "train": asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _last_train_accuracy(folder: Path) -> float | None:
    """The supernet's training accuracy in its last epoch (its history), if it was trained here."""
    path = folder / "history.jsonl"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    try:
        return float(json.loads(lines[-1])["train_acc"]) if lines else None
    except (ValueError, KeyError, TypeError):
        return None


def _plain_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _finished(done: Path, cached: Path | None, *, index: int) -> dict[str, Any] | None:
    """A stand-alone result finished before (in ``done``, or cached: then copied there), or None."""
    if done.exists():
        return read_json(done, what="stand-alone result")
    if cached is not None and cached.exists():
        record = {**read_json(cached, what="cached stand-alone result"), "index": index}
        write_json_atomic(done, record)
        return record
    return None


def run_rank_check(source: SupernetSource, config: RankCheckConfig, *, out: str | Path, resume: bool,
                   progress: bool = True, standalone_cache: str | Path | None = None,
                   dist: Distributed = SINGLE_PROCESS) -> dict[str, Any]:
    """Runs (or resumes) the ranking check and returns its report (also ``out/ranking.json``).

    Args:
        source: Where the supernet comes from, and the data and table it goes with.
        config: Number of architectures, stand-alone recipe, seed.
        out: The run folder (see the module docstring).
        resume: Continue the check in ``out`` (its settings must match).
        progress: Show tqdm bars on stderr.
        standalone_cache: A folder shared between checks for the stand-alone runs (module docstring).
        dist: The processes of a data-parallel check (the batch sizes are global batches).

    Returns:
        ``kendall_tau``, ``spearman`` (None where undefined: one side constant), ``top5_overlap``,
        ``n``, ``pairs`` (per architecture: index, indices, arch, supernet and stand-alone accuracy,
        predicted latency in ms) and the ``plot`` path, with the settings and ``reused`` (stand-alone
        results found finished in ``out``).

    Raises:
        InputError: bad settings, an unknown space, a missing run or table, an existing ``out``
            without ``resume`` or with other settings; raised before anything is written.
    """
    t0 = time.time()
    prep = _Prepared(source, config)
    settings = {"source": asdict(source), "check": asdict(config), "resolved": asdict(prep.settings)}
    run = RunDir(out, config=settings, resume=resume, dist=dist)
    folder = Path(out)  # rank 0's; the others only read what rank 0 hands them (``dist.agree``)
    done_report = dist.agree(lambda: read_json(folder / "ranking.json", what="ranking report")
                             if resume and (folder / "ranking.json").exists() else None)
    if done_report is not None:
        return done_report

    if source.run is not None:
        net = prep.supernet(source).to(dist.device)
        _load_run_weights(net, prep.run_state, source.run)
    else:
        net = _trained_supernet(prep, source, folder / "supernet", dist)

    sample = prep.sample  # deterministic for the seed: the same on every resume
    if dist.is_main and not (folder / "sample.json").exists():
        write_json_atomic(folder / "sample.json", sample)

    scores_path = folder / "supernet_scores.json"
    scores = dist.agree(lambda: read_json(scores_path, what="supernet scores") if scores_path.exists() else None)
    if scores is None:
        evaluator = SupernetEvaluator(net, prep.ds, bn_batches=source.bn_batches, seed=config.seed, dist=dist)
        net.eval()
        scores = [float(v) for v in evaluator.score_many([np.asarray(s["indices"], dtype=np.int64) for s in sample])]
        if dist.is_main:
            write_json_atomic(scores_path, scores)

    results, reused = [], 0
    bar = tqdm(total=len(sample), desc="stand-alone", unit="arch", file=sys.stderr,
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    try:
        for s in sample:
            done = folder / "standalone" / f"{s['index']:02d}.json"
            cached = run_dir = None
            if standalone_cache is not None:
                digest = standalone_digest(s["arch"], prep.train_config)
                cached, run_dir = Path(standalone_cache) / f"{digest}.json", Path(standalone_cache) / digest
            record = dist.agree(lambda: _finished(done, cached, index=s["index"]))
            if record is not None:
                results.append(record)
                reused += 1
            else:
                t1 = time.time()
                r = train_arch(prep.space, s["arch"], config=prep.train_config,
                               out_dir=run_dir or folder / "standalone" / f"{s['index']:02d}", resume=True,
                               progress=False, dist=dist)
                record = {"index": s["index"], "arch": s["arch"], "standalone_accuracy": r.accuracy,
                          "val_count": r.count, "epochs": r.epochs, "seconds": round(time.time() - t1, 2)}
                if dist.is_main:
                    if cached is not None:
                        write_json_atomic(cached, record)
                    write_json_atomic(done, record)
                results.append(record)
                run.crash_point("standalone_done")
            bar.update(1)
    finally:
        bar.close()

    pairs = [{"index": s["index"], "indices": s["indices"], "arch": s["arch"], "supernet_accuracy": sc,
              "standalone_accuracy": r["standalone_accuracy"], "predicted_latency_ms": s["predicted_latency_ms"]}
             for s, sc, r in zip(sample, scores, results)]
    sup = [p["supernet_accuracy"] for p in pairs]
    alone = [p["standalone_accuracy"] for p in pairs]
    tau, rho = _plain_float(kendall_tau(sup, alone)), _plain_float(spearman(sup, alone))
    plot = rank_scatter(pairs, kendall_tau=tau, spearman=rho, path=run.path / "ranking.png",
                        title=f"supernet ranking on {prep.space.name} ({source.data})")
    report = {
        "kendall_tau": tau, "spearman": rho, "n": len(pairs), "top5_overlap": top_k_overlap(sup, alone, k=TOP_K),
        "top_k": min(TOP_K, len(pairs)), "pairs": pairs, "plot": str(plot), "out": str(folder),
        "space": prep.space.name, "data": source.data, "table": source.table,
        "supernet": source.run if source.run is not None else str(folder / "supernet"),
        "supernet_kind": "search run" if source.run is not None else "trained here (uniform single paths, SPOS)",
        "supernet_train_accuracy": _last_train_accuracy(folder / "supernet") if source.run is None else None,
        "supernet_accuracy_kind": "top-1 on the arch-validation split with inherited weights (BN recalibrated)",
        "standalone_accuracy_kind": f"top-1 on the held-out split after {config.epochs} epoch(s) from scratch",
        "epochs": config.epochs, "seed": config.seed, "reused": reused, "seconds": round(time.time() - t0, 1),
    }
    run.write_json("ranking.json", report)
    return report
