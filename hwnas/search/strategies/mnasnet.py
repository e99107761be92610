"""``mnasnet``: platform-aware search with an RL controller and the ``ACC · (LAT/T)^w`` reward.

MnasNet (Tan et al., CVPR 2019): an RNN controller samples a batch of models per step (Sec. 4.2,
Fig. 1), each model gets its accuracy ACC(m) and its latency LAT(m) on the target, the reward
``ACC(m) · (LAT(m)/T)^w`` (Sec. 3, Eq. 2) drives a policy-gradient update of the controller (PPO in
the paper, REINFORCE with a moving-average baseline by default here), and the best sampled models
are kept. The controller (``hwnas.search.controller``) only sees decisions, so the strategy runs on every
space; the ``mnasnet`` factorized hierarchical space (Sec. 4.1) is its home.

* ACC(m): ``--accuracy supernet`` (default) trains the weight-sharing supernet first (uniform
  single paths, SPOS; ``--epochs``) and scores each model with inherited weights and recalibrated
  BatchNorm; ``--accuracy proxy`` trains each sampled model from scratch for ``--proxy-epochs``
  on the weight split and scores it on the architecture split, as the paper's 5-epoch proxy task.
* LAT(m): ``--latency model`` predicts it from the table; ``--latency measured`` builds, exports and
  times each model on the table's own device with the table's backend settings (``ort-cpu``,
  ``remote`` over adb/ssh, ...), so the device is in the loop; measurements persist in
  ``RUN/measurements.json`` and are reused on resume. A ``remote`` device is reached only with the
  user's ``--device-config`` (or ``--run-cmd``/``--parser``), never with commands from the table.
* ``--epochs 0`` is accepted with ``--accuracy proxy`` only: no supernet is trained then.
* Reward (``--mnas-reward``): ``absolute`` (the default): TuNAS's ``ACC + β·|LAT/T_eff − 1|``
  (Bender et al., CVPR 2020; β = −0.10 in its code, ``--mnas-abs-beta``), which peaks at
  ``T_eff = 0.975·T`` (the margin of the gradient strategies' budget-targeting terms,
  ``hwnas.search.dual_ascent``) and so steers the controller to models just under the budget as
  well as away from those over it; or the paper's Eq. 2, ``soft`` (α = β = −0.07; its ranking does
  not depend on T, so with it winners land far under the budget: 0.55-0.58·T in
  ``benchmarks/budget_hit.py``) or ``hard`` (α = 0, β = −1).
* FLOPs/params limits are hard: a model over them gets reward 0 and is not scored.

The run keeps every sampled model (decisions, accuracy, latency, reward) in the history, checkpoints
the controller, its optimizer, the baseline, the step and the samples after every controller step,
and resumes to the same result. The best model is the highest-reward sampled one (or the controller's
greedy one) that meets every constraint.
"""

from __future__ import annotations

import argparse
import json
import zlib
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.controller import ControllerConfig, controller_search
from hwnas.search.dual_ascent import DualAscentConfig
from hwnas.search.objective import MNAS_REWARDS, TUNAS_BETA, mnasnet_reward, tunas_reward
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.space import SearchSpace, build_model
from hwnas.supernet import uniform_paths
from hwnas.train import Dataset, batches, classification_loss, cosine_lr, evaluate, make_sgd, num_batches, set_lr

if TYPE_CHECKING:
    from hwnas.profile.device_config import RemoteCommands


#: Default controller learning rate with PPO: its several updates per batch move θ further per step.
PPO_LR = 2e-3
#: T_eff / T of the absolute reward: the gradient strategies' margin (``DualAscentConfig.margin``).
ABS_MARGIN = DualAscentConfig.margin
#: ``--mnas-reward`` choices: MnasNet's two settings of Eq. 2 and TuNAS's absolute reward.
REWARDS = (*sorted(MNAS_REWARDS), "absolute")


def proxy_accuracy(space: SearchSpace, arch: dict[str, Any], ds: Dataset, *, epochs: int, batch_size: int,
                   lr: float, weight_decay: float, seed: int) -> float:
    """Accuracy of a model trained from scratch for a few epochs (MnasNet's proxy task, Sec. 5).

    Trains on ``ds.train`` (SGD, cosine schedule) and scores on ``ds.arch``, the same splits the
    supernet uses, so the held-out ``val`` split never steers the search. Deterministic: the
    initialization is seeded by (seed, architecture), the batch order by (seed, epoch).
    """
    res = int(arch["resolution"])
    key = json.dumps(space.canonical(arch), sort_keys=True)
    torch.manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    model = build_model(space.resolve(arch)).to(memory_format=torch.channels_last)
    opt = make_sgd(model.parameters(), lr=lr, weight_decay=weight_decay)
    drop_last = len(ds.train) >= batch_size
    per_epoch = num_batches(ds.train, batch_size=batch_size, drop_last=drop_last)
    total = per_epoch * epochs
    model.train()
    for epoch in range(epochs):
        for i, (x, y) in enumerate(batches(ds.train, ds, batch_size=batch_size, resolution=res, seed=seed,
                                           epoch=epoch, drop_last=drop_last)):
            set_lr(opt, cosine_lr(lr, epoch * per_epoch + i, total))
            loss = classification_loss(model(x), y)  # model(x): N, classes
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return float(evaluate(model, ds.arch, ds, resolution=res).accuracy)


@register_strategy("mnasnet")
class MnasNet(Strategy):
    """MnasNet RL search (Tan et al. 2019): LSTM controller, policy gradient, ``ACC · (LAT/T)^w`` reward.

    Args:
        controller: Controller and policy-gradient settings.
        steps: Controller steps.
        archs_per_step: Models sampled per step.
        alpha: Reward exponent when LAT ≤ T.
        beta: Reward exponent when LAT > T.
        reward: ``exponent`` (Eq. 2 with ``alpha`` / ``beta``) or ``absolute`` (TuNAS).
        abs_beta: β ≤ 0 of the absolute reward.
        accuracy: ``supernet`` or ``proxy``.
        proxy_epochs: Epochs of proxy training (``None``: ``--epochs``).
        latency: ``model`` or ``measured``.
        measure_repeats: Timed runs per model and pass (``None``: the table's profile setting).
        measure_warmup: Untimed runs per model first (``None``: the table's).
        commands: The user's remote-device commands (``--device-config``) for a table measured on a
            ``remote`` device; a table's own commands are never run.
        checkpoint_every: Controller steps between checkpoints (the result does not depend on it).
    """

    def __init__(self, *, controller: ControllerConfig, steps: int = 50, archs_per_step: int = 8,
                 alpha: float = -0.07, beta: float = -0.07, reward: str = "exponent",
                 abs_beta: float = TUNAS_BETA, accuracy: str = "supernet",
                 proxy_epochs: int | None = None, latency: str = "model", measure_repeats: int | None = None,
                 measure_warmup: int | None = None, checkpoint_every: int = 1,
                 commands: RemoteCommands | None = None) -> None:
        if steps < 1:
            raise InputError(f"--mnas-steps must be >= 1, got {steps}.")
        if archs_per_step < 1:
            raise InputError(f"--mnas-archs-per-step must be >= 1, got {archs_per_step}.")
        if accuracy not in ("supernet", "proxy"):
            raise InputError(f"--accuracy must be supernet or proxy, got {accuracy!r}.")
        if latency not in ("model", "measured"):
            raise InputError(f"--latency must be model or measured, got {latency!r}.")
        if proxy_epochs is not None and proxy_epochs < 1:
            raise InputError(f"--proxy-epochs must be >= 1, got {proxy_epochs}.")
        if measure_repeats is not None and measure_repeats < 1:
            raise InputError(f"--mnas-measure-repeats must be >= 1, got {measure_repeats}.")
        if checkpoint_every < 1:
            raise InputError(f"--mnas-checkpoint-every must be >= 1, got {checkpoint_every}.")
        if measure_warmup is not None and measure_warmup < 0:
            raise InputError(f"--mnas-measure-warmup must be >= 0, got {measure_warmup}.")
        if reward not in ("exponent", "absolute"):
            raise InputError(f"--mnas-reward must be one of {', '.join(REWARDS)}, got {reward!r}.")
        for name, v in (("--mnas-alpha", alpha), ("--mnas-beta", beta), ("--mnas-abs-beta", abs_beta)):
            if not np.isfinite(v) or v > 0:
                raise InputError(f"{name} must be a finite number <= 0, got {v}.")
        self.controller, self.steps, self.archs_per_step = controller, steps, archs_per_step
        self.alpha, self.beta = float(alpha), float(beta)
        self.reward, self.abs_beta = reward, float(abs_beta)
        self.accuracy, self.proxy_epochs, self.latency = accuracy, proxy_epochs, latency
        self.measure_repeats, self.measure_warmup = measure_repeats, measure_warmup
        self.commands = commands
        self.checkpoint_every = checkpoint_every

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("mnasnet (RL controller)")
        g.add_argument("--accuracy", choices=["supernet", "proxy"], default="supernet",
                       help="mnasnet: ACC(m) from the trained supernet (inherited weights, BN recalibrated) "
                            "or from proxy training of each model from scratch")
        g.add_argument("--proxy-epochs", type=int, default=None,
                       help="mnasnet: epochs of proxy training per model (default: --epochs)")
        g.add_argument("--latency", choices=["model", "measured"], default="model",
                       help="mnasnet: LAT(m) from the latency model, or measured on the table's device")
        g.add_argument("--mnas-steps", type=int, default=50, help="controller steps")
        g.add_argument("--mnas-archs-per-step", type=int, default=8, help="models sampled per controller step")
        g.add_argument("--mnas-reward", choices=REWARDS, default="absolute",
                       help="reward: absolute (default; TuNAS): ACC + beta*|LAT/T_eff - 1|, T_eff = 0.975*T; or "
                            "MnasNet Eq. 2 ACC*(LAT/T)^w with soft (alpha = beta = -0.07) or hard "
                            "(alpha = 0, beta = -1) exponents")
        g.add_argument("--mnas-abs-beta", type=float, default=TUNAS_BETA,
                       help=f"beta of the absolute reward ({TUNAS_BETA:g}, TuNAS's code)")
        g.add_argument("--mnas-alpha", type=float, default=None, help="reward exponent when LAT <= T (overrides)")
        g.add_argument("--mnas-beta", type=float, default=None, help="reward exponent when LAT > T (overrides)")
        g.add_argument("--mnas-lr", type=float, default=None,
                       help=f"controller Adam learning rate (default {ControllerConfig.lr:g}; "
                            f"{PPO_LR:g} with --mnas-ppo)")
        g.add_argument("--mnas-hidden", type=int, default=ControllerConfig.hidden, help="controller LSTM size")
        g.add_argument("--mnas-entropy-weight", type=float, default=ControllerConfig.entropy_weight,
                       help="entropy bonus weight")
        g.add_argument("--mnas-baseline-decay", type=float, default=ControllerConfig.baseline_decay,
                       help="decay of the reward's moving-average baseline")
        g.add_argument("--mnas-tanh-c", type=float, default=ControllerConfig.tanh_constant,
                       help="logit tanh constant (0: off)")
        g.add_argument("--mnas-ppo", action="store_true", help="PPO clipped objective (the paper) instead of REINFORCE")
        g.add_argument("--mnas-ppo-clip", type=float, default=ControllerConfig.ppo_clip, help="PPO clip range")
        g.add_argument("--mnas-ppo-epochs", type=int, default=ControllerConfig.ppo_epochs,
                       help="PPO updates per sampled batch")
        g.add_argument("--mnas-measure-repeats", type=int, default=None,
                       help="--latency measured: timed runs per model and pass (default: the table's)")
        g.add_argument("--mnas-measure-warmup", type=int, default=None,
                       help="--latency measured: untimed runs per model (default: the table's)")
        g.add_argument("--mnas-checkpoint-every", type=int, default=1,
                       help="controller steps between checkpoints (raise it when the supernet is large)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "MnasNet":
        alpha, beta = MNAS_REWARDS.get(args.mnas_reward, MNAS_REWARDS["soft"])
        commands = None
        if args.latency == "measured":  # before the run directory is written
            from hwnas.latency import LatencyTable
            from hwnas.profile import check_measurable
            from hwnas.profile.device_config import commands_from_args

            commands = commands_from_args(args)
            check_measurable(LatencyTable.load(args.table), commands=commands, what="--latency measured")
        lr = args.mnas_lr if args.mnas_lr is not None else (PPO_LR if args.mnas_ppo else ControllerConfig.lr)
        controller = ControllerConfig(hidden=args.mnas_hidden, lr=lr,
                                      entropy_weight=args.mnas_entropy_weight,
                                      baseline_decay=args.mnas_baseline_decay, tanh_constant=args.mnas_tanh_c,
                                      ppo=args.mnas_ppo, ppo_clip=args.mnas_ppo_clip, ppo_epochs=args.mnas_ppo_epochs)
        return cls(controller=controller, steps=args.mnas_steps, archs_per_step=args.mnas_archs_per_step,
                   alpha=alpha if args.mnas_alpha is None else args.mnas_alpha,
                   beta=beta if args.mnas_beta is None else args.mnas_beta,
                   reward="absolute" if args.mnas_reward == "absolute" else "exponent",
                   abs_beta=args.mnas_abs_beta, accuracy=args.accuracy,
                   proxy_epochs=args.proxy_epochs, latency=args.latency, measure_repeats=args.mnas_measure_repeats,
                   measure_warmup=args.mnas_measure_warmup, checkpoint_every=args.mnas_checkpoint_every,
                   commands=commands)

    def runs_without_weight_training(self) -> bool:
        """``--accuracy proxy`` trains each sampled model itself: ``--epochs 0`` skips the supernet."""
        return self.accuracy == "proxy"

    def measures_on_device(self) -> bool:
        return self.latency == "measured"

    def settings(self) -> dict[str, Any]:
        return {"controller": self.controller.to_json(), "steps": self.steps, "archs_per_step": self.archs_per_step,
                "alpha": self.alpha, "beta": self.beta, "reward": self.reward, "abs_beta": self.abs_beta,
                "accuracy": self.accuracy, "proxy_epochs": self.proxy_epochs,
                "latency": self.latency, "measure_repeats": self.measure_repeats,
                "measure_warmup": self.measure_warmup}

    # ---- ACC(m) and LAT(m) -------------------------------------------------------------------

    def _accuracy_fn(self, ctx: SearchContext, cache: dict[str, float]) -> Callable[[np.ndarray], float]:
        if self.accuracy == "supernet":
            ctx.train_weights(uniform_paths(ctx.space))
            return ctx.score
        space, ds, train = ctx.space, ctx.dataset, ctx.train_config
        epochs = self.proxy_epochs if self.proxy_epochs is not None else train.epochs
        if epochs < 1:
            raise InputError("--accuracy proxy needs --proxy-epochs (or --epochs) >= 1.")

        def acc(idx: np.ndarray) -> float:
            arch = space.canonical(ctx.decode(idx))
            key = json.dumps(arch, sort_keys=True)
            if key not in cache:
                cache[key] = proxy_accuracy(space, arch, ds, epochs=epochs, batch_size=train.batch_size,
                                            lr=train.lr, weight_decay=train.weight_decay, seed=ctx.seed)
            return cache[key]

        return acc

    def _measure_fn(self, ctx: SearchContext) -> Callable[[np.ndarray], np.ndarray] | None:
        if self.latency == "model":
            return None
        from hwnas.profile import MeasurementStore, check_measurable, default_repeats, measure_archs

        table = ctx.table
        check_measurable(table, commands=self.commands, what="--latency measured")
        repeats, warmup = default_repeats(table)
        repeats = self.measure_repeats or repeats
        warmup = warmup if self.measure_warmup is None else self.measure_warmup
        store = MeasurementStore(ctx.run.path / "measurements.json", device=table.device, repeats=repeats,
                                 warmup=warmup)
        space = ctx.space

        def measure(idx: np.ndarray) -> np.ndarray:
            archs = [space.canonical(ctx.decode(i)) for i in idx]
            return np.asarray(measure_archs(space, archs, table=table, store=store, repeats=repeats, warmup=warmup,
                                            commands=self.commands, seed=ctx.seed, desc="measuring", progress=True), dtype=np.float64)

        return measure

    # ---- search ------------------------------------------------------------------------------

    def search(self, ctx: SearchContext) -> SearchResult:
        saved = (ctx.state or {}).get("strategy")
        proxy_cache: dict[str, float] = dict((saved or {}).get("proxy_cache", {}))
        measure = self._measure_fn(ctx)
        accuracy = self._accuracy_fn(ctx, proxy_cache)
        c = ctx.constraints
        target = float(c.latency_ms)
        aimed = ABS_MARGIN * target  # ms, T_eff of the absolute reward

        def evaluate_batch(idx: np.ndarray) -> list[dict[str, Any]]:
            lat, flops, params = ctx.costs.all(idx)  # predicted ms, FLOPs, params: (K,)
            hard = c.feasible(latency=np.zeros_like(lat), flops=flops, params=params)  # FLOPs / params only
            measured = np.full(len(idx), np.nan)
            if measure is not None and hard.any():
                measured[hard] = measure(idx[hard])
            records = []
            for k, i in enumerate(idx):
                rec = {"indices": i.tolist(), "accuracy": None, "latency_ms": float(lat[k]),
                       "measured_latency_ms": None if np.isnan(measured[k]) else float(measured[k]),
                       "flops": float(flops[k]), "params": float(params[k]), "reward": 0.0, "feasible": False}
                if hard[k]:
                    used = float(measured[k]) if measure is not None else float(lat[k])
                    rec["accuracy"] = float(accuracy(i))
                    rec["reward"] = float(tunas_reward(rec["accuracy"], used, aimed, beta=self.abs_beta)
                                          if self.reward == "absolute" else
                                          mnasnet_reward(rec["accuracy"], used, target, alpha=self.alpha,
                                                         beta=self.beta))
                    rec["feasible"] = bool(used <= target)
                records.append(rec)
            return records

        def on_step(state: dict[str, Any], summary: dict[str, Any]) -> None:
            recent = state["samples"][-self.archs_per_step:]
            scored = [r for r in recent if r["accuracy"] is not None]
            ctx.run.append_history({
                "phase": self.name, **summary,
                "mean_accuracy": float(np.mean([r["accuracy"] for r in scored])) if scored else None,
                "mean_latency_ms": float(np.mean([_used_latency(r) for r in recent])),
                "feasible": sum(r["feasible"] for r in recent),
                "samples": [{k: r[k] for k in ("indices", "accuracy", "latency_ms", "measured_latency_ms",
                                                "reward", "feasible")} for r in recent]})
            if summary["step"] % self.checkpoint_every == 0 or summary["step"] == self.steps:
                ctx.checkpoint({"loop": state, "proxy_cache": proxy_cache})
            ctx.run.crash_point("controller_step")

        state = controller_search(num_options=ctx.space.num_options, evaluate_batch=evaluate_batch,
                                  config=self.controller, steps=self.steps, archs_per_step=self.archs_per_step,
                                  seed=ctx.seed, state=(saved or {}).get("loop"), on_step=on_step)
        greedy = evaluate_batch(np.asarray([state["greedy"]], dtype=np.int64))[0]
        greedy["step"] = "greedy"
        unique = _unique([*state["samples"], greedy])
        best = _select(unique)
        curve = state["curve"]
        from hwnas.plots import write_controller_plot

        write_controller_plot(state["samples"], curve, used_latency=_used_latency, target=target, path=ctx.run.path / "controller.png",
                              title=f"mnasnet on {ctx.space.name}")
        window = max(1, len(curve) // 5)
        extra = {
            "accuracy_kind": ("top-1 on the arch-validation split with inherited supernet weights (BN recalibrated)"
                              if self.accuracy == "supernet" else
                              "top-1 on the arch-validation split after proxy training from scratch"),
            "latency_source": "latency model (predicted)" if measure is None else "measured on the table's device",
            "reward": ({"form": "absolute", "beta": self.abs_beta, "target_ms": target, "aimed_ms": aimed}
                       if self.reward == "absolute"
                       else {"alpha": self.alpha, "beta": self.beta, "target_ms": target}),
            "best_reward": best["reward"], "best_reward_latency_ms": _used_latency(best),
            "best_measured_latency_ms": best["measured_latency_ms"],
            "sampled": len(state["samples"]), "unique_sampled": len(_unique(state["samples"])),
            "controller_steps": len(curve),
            "mean_reward_first": float(np.mean([s["mean_reward"] for s in curve[:window]])),
            "mean_reward_last": float(np.mean([s["mean_reward"] for s in curve[-window:]])),
            "greedy": {k: greedy[k] for k in ("indices", "accuracy", "latency_ms", "measured_latency_ms", "reward",
                                              "feasible")},
        }
        candidates = [{k: r[k] for k in ("indices", "accuracy", "latency_ms", "flops", "params",
                                         "measured_latency_ms", "reward")}
                      for r in unique if r["accuracy"] is not None]
        return SearchResult(best=np.asarray(best["indices"], dtype=np.int64), score=float(best["accuracy"] or 0.0),
                            candidates=candidates, extra=extra)


def _used_latency(rec: dict[str, Any]) -> float:
    """The latency the reward used: measured when measured, else predicted (ms)."""
    m = rec.get("measured_latency_ms")
    return float(rec["latency_ms"] if m is None else m)


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First record of every distinct index vector, in order."""
    seen, out = set(), []
    for r in records:
        key = tuple(r["indices"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _select(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Highest reward among models meeting every constraint (else among all); ties: accuracy, then indices."""
    pool = [r for r in records if r["feasible"]] or records
    return max(pool, key=lambda r: (r["reward"], r["accuracy"] or 0.0, [-v for v in r["indices"]]))
