"""The RL controller of MnasNet: an LSTM that emits one token per decision of a search space.

MnasNet (Tan et al., CVPR 2019, Sec. 4.2) maps each CNN model of the search space to a list of
tokens ``a_1:T`` predicted by an RNN controller with parameters θ, samples a batch of models, and
maximizes the expected reward ``J = E_{P(a_1:T; θ)}[R(m)]`` with Proximal Policy Optimization.
The controller follows NAS (Zoph & Le, ICLR 2017, Sec. 3.1-3.2): at step t an LSTM reads the
embedding of the token chosen at step t-1 (a learned start embedding at t = 1), and a softmax head
of decision t gives the distribution of its token. The controller only ever sees decisions (option
indices of ``SearchSpace.decisions``): every sampled index vector is in range by construction and
so decodes with ``SearchSpace.decode``.

Policy-gradient losses (to minimize):

* REINFORCE (Williams 1992; NAS Sec. 3.2): ``-(R - b) · log P(a_1:T) - λ_H · H``, with ``b`` an
  exponential moving average of past rewards.
* PPO clipped surrogate (Schulman et al. 2017, Eq. 7), used by MnasNet:
  ``-min(r · A, clip(r, 1 - ε, 1 + ε) · A) - λ_H · H`` with ``r = P_θ(a) / P_θold(a)``.

``H`` is the exact entropy of the token distributions along the sampled sequence (a bonus that keeps
the controller exploring). Sampling draws from a ``numpy.random.Generator``, so a run that derives
one generator per controller step from (seed, step) samples the same architectures after a resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hwnas.errors import InputError


@dataclass(frozen=True)
class ControllerConfig:
    """Controller and policy-gradient settings.

    Attributes:
        hidden: LSTM hidden size (and token embedding size).
        lr: Adam learning rate of θ.
        entropy_weight: λ_H, weight of the entropy bonus.
        baseline_decay: Decay of the reward's moving-average baseline (``b ← d·b + (1-d)·mean R``).
        tanh_constant: Logits are ``c · tanh(logits / c)`` (ENAS, Pham et al. 2018, keeps early
            policies from collapsing); 0 turns it off.
        ppo: Use PPO's clipped objective (MnasNet) instead of REINFORCE.
        ppo_clip: PPO clipping range ε.
        ppo_epochs: PPO updates per batch of sampled architectures.
        grad_clip: Max gradient norm of θ per update (0: off).
    """

    hidden: int = 64
    lr: float = 5e-3
    entropy_weight: float = 1e-3
    baseline_decay: float = 0.9
    tanh_constant: float = 2.5
    ppo: bool = False
    ppo_clip: float = 0.2
    ppo_epochs: int = 4
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        checks = [
            (self.hidden >= 1, "--mnas-hidden must be >= 1"),
            (self.lr > 0, "--mnas-lr must be > 0"),
            (self.entropy_weight >= 0, "--mnas-entropy-weight must be >= 0"),
            (0.0 <= self.baseline_decay < 1.0, "--mnas-baseline-decay must be in [0, 1)"),
            (self.tanh_constant >= 0, "--mnas-tanh-c must be >= 0"),
            (0.0 < self.ppo_clip < 1.0, "--mnas-ppo-clip must be in (0, 1)"),
            (self.ppo_epochs >= 1, "--mnas-ppo-epochs must be >= 1"),
            (self.grad_clip >= 0, "--mnas-grad-clip must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"{message}.")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Controller(nn.Module):
    """LSTM policy over the decisions of a space: one token (option index) per decision.

    Args:
        num_options: Options per decision (``SearchSpace.num_options``).
        hidden: Hidden and embedding size.
        tanh_constant: Logit squashing constant (0: none).
    """

    def __init__(self, num_options: Sequence[int], *, hidden: int = 64, tanh_constant: float = 2.5) -> None:
        super().__init__()
        if not num_options or any(int(n) < 1 for n in num_options):
            raise InputError("the controller needs at least one decision, each with at least one option.")
        self.num_options = tuple(int(n) for n in num_options)
        self.tanh_constant = float(tanh_constant)
        offsets = np.concatenate([[0], np.cumsum(self.num_options)[:-1]])
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False)
        self.start = nn.Parameter(torch.zeros(1, hidden))  # input of the first step
        self.embed = nn.Embedding(sum(self.num_options), hidden)  # one row per (decision, option)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList([nn.Linear(hidden, n) for n in self.num_options])
        for p in self.parameters():  # NAS / ENAS initialization: near-uniform initial policy
            nn.init.uniform_(p, -0.1, 0.1)

    def _logits(self, t: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[t](h)  # N, num_options[t]
        if self.tanh_constant > 0:
            logits = self.tanh_constant * torch.tanh(logits / self.tanh_constant)
        return logits

    def _unroll(self, n: int, choose) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Runs the LSTM over all decisions; ``choose(t, log_probs)`` gives the tokens of step t (N,)."""
        hidden = self.start.shape[1]
        h = self.start.new_zeros(n, hidden)
        c = self.start.new_zeros(n, hidden)
        x = self.start.expand(n, hidden)
        tokens, log_prob, entropy = [], self.start.new_zeros(n), self.start.new_zeros(n)
        for t in range(len(self.num_options)):
            h, c = self.lstm(x, (h, c))  # N, hidden
            logp = torch.log_softmax(self._logits(t, h), dim=1)  # N, options
            a = choose(t, logp)  # N
            tokens.append(a)
            log_prob = log_prob + logp.gather(1, a[:, None]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(1)
            x = self.embed(a + self.offsets[t])  # N, hidden: the chosen token, fed back
        return torch.stack(tokens, 1), log_prob, entropy

    @torch.no_grad()
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Samples ``n`` architectures: option indices (n, num_decisions), int64, each in range.

        Draws by inverting each token's CDF with ``rng.random(n)``, so the result is a function of
        the parameters and the generator.
        """
        if n < 1:
            raise InputError(f"--mnas-archs-per-step must be >= 1, got {n}.")

        def choose(t: int, logp: torch.Tensor) -> torch.Tensor:
            cdf = np.cumsum(logp.exp().double().numpy(), axis=1)  # N, options
            u = rng.random(n) * cdf[:, -1]
            idx = (cdf < u[:, None]).sum(1)
            return torch.as_tensor(np.minimum(idx, self.num_options[t] - 1), dtype=torch.long)

        tokens, _, _ = self._unroll(n, choose)
        return tokens.numpy().astype(np.int64)

    @torch.no_grad()
    def greedy(self) -> np.ndarray:
        """The most likely token at every step (feeding back the argmax): option indices (num_decisions,)."""
        tokens, _, _ = self._unroll(1, lambda t, logp: logp.argmax(1))
        return tokens[0].numpy().astype(np.int64)

    def evaluate(self, indices: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of given sequences (teacher forcing), differentiable.

        Args:
            indices: Option indices (N, num_decisions).

        Returns:
            ``log P(a_1:T)`` (N,) and the summed per-token entropy along the sequence (N,), nats.
        """
        a = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if a.ndim != 2 or a.shape[1] != len(self.num_options):
            raise ValueError(f"expected indices of shape (N, {len(self.num_options)}), got {tuple(a.shape)}")
        _, log_prob, entropy = self._unroll(a.shape[0], lambda t, logp: a[:, t])
        return log_prob, entropy


def reinforce_loss(log_prob: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor, *,
                   entropy_weight: float) -> torch.Tensor:
    """REINFORCE with a baseline (Williams 1992; NAS, Zoph & Le 2017, Sec. 3.2), batch mean.

    ``-mean((R - b) · log P(a)) - λ_H · mean(H)``; ``advantage`` = R - b is a constant (N,).
    """
    return -(advantage.detach() * log_prob).mean() - entropy_weight * entropy.mean()


def ppo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor, *,
             clip: float, entropy_weight: float) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, Eq. 7) with an entropy bonus, batch mean.

    ``-mean(min(r · A, clip(r, 1-ε, 1+ε) · A)) - λ_H · mean(H)``, ``r = exp(log P - log P_old)``.
    """
    ratio = torch.exp(log_prob - old_log_prob.detach())
    adv = advantage.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    return -surrogate.mean() - entropy_weight * entropy.mean()


def ema_baseline(baseline: float | None, rewards: np.ndarray, *, decay: float) -> float:
    """The moving-average baseline after a batch: the batch mean first, then ``d·b + (1-d)·mean R``."""
    mean = float(np.mean(rewards))
    return mean if baseline is None else decay * baseline + (1.0 - decay) * mean


class PolicyTrainer:
    """The controller, its Adam optimizer and the reward baseline; one ``update`` per sampled batch.

    Args:
        num_options: Options per decision.
        config: Settings.
        seed: Seeds θ's initialization.
    """

    def __init__(self, num_options: Sequence[int], *, config: ControllerConfig, seed: int) -> None:
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(num_options, hidden=config.hidden, tanh_constant=config.tanh_constant)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=config.lr)
        self.baseline: float | None = None

    def update(self, indices: np.ndarray, rewards: np.ndarray) -> dict[str, float]:
        """One policy-gradient update on sampled architectures and their rewards.

        The advantage of each architecture is ``R - b`` with the baseline before this batch (the batch
        mean on the first one); the baseline then moves toward the batch mean.

        Returns:
            ``loss``, ``entropy`` (mean nats per architecture), ``baseline`` (before the update),
            ``mean_reward``.
        """
        cfg = self.config
        rewards = np.asarray(rewards, dtype=np.float64)
        base = float(np.mean(rewards)) if self.baseline is None else self.baseline
        adv = torch.as_tensor(rewards - base, dtype=torch.float32)
        self.controller.train()
        with torch.no_grad():
            old_log_prob, _ = self.controller.evaluate(indices)
        loss_value, entropy_value = 0.0, 0.0
        for _ in range(cfg.ppo_epochs if cfg.ppo else 1):
            log_prob, entropy = self.controller.evaluate(indices)
            if cfg.ppo:
                loss = ppo_loss(log_prob, old_log_prob, adv, entropy, clip=cfg.ppo_clip,
                                entropy_weight=cfg.entropy_weight)
            else:
                loss = reinforce_loss(log_prob, adv, entropy, entropy_weight=cfg.entropy_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.controller.parameters(), cfg.grad_clip)
            self.optimizer.step()
            loss_value, entropy_value = float(loss.detach()), float(entropy.detach().mean())
        self.baseline = ema_baseline(self.baseline, rewards, decay=cfg.baseline_decay)
        return {"loss": loss_value, "entropy": entropy_value, "baseline": base, "mean_reward": float(rewards.mean())}

    def state_dict(self) -> dict[str, Any]:
        """Controller parameters, optimizer state and baseline (``torch.load(weights_only=True)``-safe)."""
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])


#: Stream id of the controller's sampling generators: ``default_rng([seed, STREAM, step])``.
SAMPLE_STREAM = 29


#: A batch evaluator: option indices (K, D) → one record per architecture, each with a ``reward``.
EvaluateBatch = Callable[[np.ndarray], list[dict[str, Any]]]


def controller_search(*, num_options: tuple[int, ...], evaluate_batch: EvaluateBatch, config: ControllerConfig,
                      steps: int, archs_per_step: int, seed: int, state: dict[str, Any] | None = None,
                      on_step: Callable[[dict[str, Any], dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The sample-evaluate-update loop of MnasNet (Sec. 4.2, Fig. 1) on option indices only.

    Each step samples ``archs_per_step`` architectures from the controller with the generator of
    (seed, step), gets their rewards from ``evaluate_batch`` and makes one policy-gradient update.

    Args:
        num_options: Options per decision.
        evaluate_batch: Rewards (and whatever else to record) of sampled architectures.
        config: Controller settings.
        steps: Controller steps in all.
        archs_per_step: Architectures sampled per step.
        seed: Seeds θ's initialization and the sampling.
        state: The state of an interrupted run (as passed to ``on_step``).
        on_step: Called after every step with the state and the step's summary (checkpointing).

    Returns:
        The final state: ``step``, ``trainer`` (controller, optimizer, baseline), ``samples`` (every
        record, with ``step``) and ``curve`` (per-step summaries).
    """
    trainer = PolicyTrainer(num_options, config=config, seed=seed)
    if state is None:
        state = {"step": 0, "samples": [], "curve": []}
    else:
        trainer.load_state_dict(state["trainer"])
    bar = tqdm(total=steps, initial=state["step"], desc="controller", unit="step", leave=False, dynamic_ncols=True)
    while state["step"] < steps:
        step = state["step"]
        idx = trainer.controller.sample(archs_per_step, np.random.default_rng([seed, SAMPLE_STREAM, step]))
        records = evaluate_batch(idx)
        rewards = np.array([r["reward"] for r in records], dtype=np.float64)
        stats = trainer.update(idx, rewards)
        for r in records:
            r["step"] = step
        state["samples"] += records
        summary = {"step": step + 1, **stats, "max_reward": float(rewards.max()),
                   "best_reward_so_far": max(float(s["reward"]) for s in state["samples"])}
        state["curve"].append(summary)
        state["step"] = step + 1
        state["trainer"] = trainer.state_dict()
        bar.update(1)
        bar.set_postfix(reward=f"{stats['mean_reward']:.4f}", refresh=False)
        if on_step is not None:
            on_step(state, summary)
    bar.close()
    state["trainer"] = trainer.state_dict()
    state["greedy"] = trainer.controller.greedy().tolist()
    return state
