"""The TNAS sampler model: a VAE whose encoder and decoder are transformers over decision tokens.

TNAS (Yan et al., CONVERTER 2021) learns the distribution of good architectures during the search.
An architecture is the op string α = {o_i}, one token per decision (Sec. 3.2); here a token is the
pair (decision i, option o_i), embedded from one table with an offset per decision, plus a learned
position embedding of i.

* Encoder E = q_φ(z | α) (Sec. 3.2-3.3): the token embeddings go through ``layers`` transformer
  blocks (Eq. 3-8: multi-head self-attention with ``heads`` heads, a ReLU feed-forward layer, post
  layer norm as in Vaswani et al. 2017), are mean-pooled, and a linear layer gives μ and log σ².
* Decoder D = p_θ(α | z): z ~ N(μ, σ²) is projected to the model width and added to a learned
  position embedding per decision, goes through ``layers`` transformer blocks, and a linear head
  gives each decision's logits over its options (options a decision does not have are masked).
  The decisions are conditionally independent given z; their dependencies go through z and the
  decoder's self-attention. (The paper does not say whether D is autoregressive; this one is not,
  so a draw is one forward pass.)
* Training maximizes the ELBO of Eq. 2 with p(z) = N(0, I): the loss is
  ``KL(q_φ(z|α) ‖ N(0, I)) + E_q[−log p_θ(α|z)]`` (``elbo_terms``), one reparameterized sample of
  z per architecture, Adam on the whole (small) training set per step.

Sizes (defaults, ``VaeConfig``; the paper gives none): width 32, 2 heads, 1 block in the encoder
and 1 in the decoder, feed-forward width 64, latent size 8. Parameters: 19,413 (nasbench201, 6
decisions of 5 options), 21,876 (spos-shufflenet), 22,551 (mobilenetv2), 24,634 (darts), 25,203
(ofa-mbv3, 45 decisions). One retraining (200 Adam steps on the top-10) takes 1-2 s on one CPU
core, a draw of 8 decodes about 0.3 ms. No dropout, so a forward pass is a pure function of the
weights; every random draw (initial weights, reparameterization noise, z) comes from an explicit
generator.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import InputError


@dataclass(frozen=True)
class VaeConfig:
    """Sizes and training of the TNAS VAE (Sec. 3.2-3.3; the paper gives no sizes).

    Attributes:
        d_model: Token width of both transformers.
        heads: Attention heads per block (``d_model`` must be a multiple).
        layers: Transformer blocks in the encoder and, as many, in the decoder.
        ff: Width of the ReLU feed-forward layer (Eq. 8).
        latent: Size of z.
        steps: Adam steps per (re)training on the current top-k.
        lr: Adam learning rate.
    """

    d_model: int = 32
    heads: int = 2
    layers: int = 1
    ff: int = 64
    latent: int = 8
    steps: int = 200
    lr: float = 3e-3

    def __post_init__(self) -> None:
        checks = [
            (self.d_model >= 1 and self.heads >= 1 and self.d_model % self.heads == 0,
             f"--tnas-d-model must be a positive multiple of --tnas-heads, got {self.d_model} and {self.heads}."),
            (self.layers >= 1, f"--tnas-layers must be >= 1, got {self.layers}."),
            (self.ff >= 1, f"--tnas-ff must be >= 1, got {self.ff}."),
            (self.latent >= 1, f"--tnas-latent must be >= 1, got {self.latent}."),
            (self.steps >= 1, f"--tnas-vae-steps must be >= 1, got {self.steps}."),
            (self.lr > 0, f"--tnas-vae-lr must be positive, got {self.lr}."),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--tnas-d-model", type=int, default=cls.d_model, help="TNAS: VAE token width")
        p.add_argument("--tnas-heads", type=int, default=cls.heads, help="TNAS: VAE attention heads")
        p.add_argument("--tnas-layers", type=int, default=cls.layers,
                       help="TNAS: transformer blocks of the VAE's encoder (and of its decoder)")
        p.add_argument("--tnas-ff", type=int, default=cls.ff, help="TNAS: VAE feed-forward width")
        p.add_argument("--tnas-latent", type=int, default=cls.latent, help="TNAS: size of the VAE's latent z")
        p.add_argument("--tnas-vae-steps", type=int, default=cls.steps,
                       help="TNAS: Adam steps each time the VAE is retrained on the top-k")
        p.add_argument("--tnas-vae-lr", type=float, default=cls.lr, help="TNAS: Adam learning rate of the VAE")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "VaeConfig":
        return cls(d_model=args.tnas_d_model, heads=args.tnas_heads, layers=args.tnas_layers, ff=args.tnas_ff,
                   latent=args.tnas_latent, steps=args.tnas_vae_steps, lr=args.tnas_vae_lr)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def elbo_terms(mu: torch.Tensor, logvar: torch.Tensor, logits: torch.Tensor,
               target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the negative ELBO (Eq. 2), each averaged over the batch.

    ``KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)`` (closed form) and the
    reconstruction ``−log p_θ(α | z) = Σ_i CE(logits_i, o_i)`` summed over the decisions.

    Args:
        mu: μ, B, latent.
        logvar: log σ², B, latent.
        logits: Decoder logits, B, D, max options (masked entries −inf).
        target: Option indices α, B, D.

    Returns:
        (KL, reconstruction), 0-d tensors; the loss is their sum.

    Example: μ = (0.5, −1), log σ² = (0, log 4): KL = ½(0.25 + 0 + 0) + ½(1 + 4 − 1 − log 4) = 1.4319.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
    b, d, n = logits.shape
    recon = F.cross_entropy(logits.reshape(b * d, n), target.reshape(b * d), reduction="sum") / b
    return kl, recon


def _blocks(config: VaeConfig) -> nn.ModuleList:
    return nn.ModuleList([nn.TransformerEncoderLayer(config.d_model, config.heads, dim_feedforward=config.ff,
                                                     dropout=0.0, activation="relu", batch_first=True)
                          for _ in range(config.layers)])


class ArchVae(nn.Module):
    """Transformer VAE over the option indices of a space's decisions (module docstring).

    Args:
        num_options: Options per decision.
        config: Sizes.
        seed: Seed of the initial weights (the global torch generator is left as it was).
    """

    def __init__(self, num_options: Sequence[int], *, config: VaeConfig, seed: int) -> None:
        super().__init__()
        self.num_options = tuple(int(n) for n in num_options)
        self.config = config
        d, n = len(self.num_options), max(self.num_options)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.tokens = nn.Embedding(sum(self.num_options), config.d_model)
            self.enc_pos = nn.Parameter(0.02 * torch.randn(d, config.d_model))
            self.encoder = _blocks(config)
            self.to_stats = nn.Linear(config.d_model, 2 * config.latent)
            self.from_z = nn.Linear(config.latent, config.d_model)
            self.dec_pos = nn.Parameter(0.02 * torch.randn(d, config.d_model))
            self.decoder = _blocks(config)
            self.head = nn.Linear(config.d_model, n)
        self.register_buffer("offsets", torch.tensor(np.concatenate([[0], np.cumsum(self.num_options)[:-1]]),
                                                     dtype=torch.long), persistent=False)
        valid = torch.arange(n)[None, :] < torch.tensor(self.num_options)[:, None]  # D, max options
        self.register_buffer("valid", valid, persistent=False)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_φ(z | α): option indices (B, D) → (μ, log σ²), each B, latent."""
        h = self.tokens(idx + self.offsets) + self.enc_pos  # B, D, d_model
        for block in self.encoder:
            h = block(h)
        mu, logvar = self.to_stats(h.mean(1)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """p_θ(α | z): z (B, latent) → logits (B, D, max options), options a decision lacks at −inf."""
        h = self.from_z(z)[:, None, :] + self.dec_pos  # B, D, d_model
        for block in self.decoder:
            h = block(h)
        return self.head(h).masked_fill(~self.valid, float("-inf"))

    def loss_terms(self, idx: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL, reconstruction) of Eq. 2 on a batch of architectures (B, D), one z per architecture."""
        mu, logvar = self.encode(idx)
        eps = torch.randn(mu.shape, generator=generator)
        z = mu + (0.5 * logvar).exp() * eps
        return elbo_terms(mu, logvar, self.decode(z), idx)

    def fit(self, data: np.ndarray, *, generator: torch.Generator) -> dict[str, float]:
        """Maximizes the ELBO on ``data`` (N, D option indices) for ``config.steps`` Adam steps, starting
        from the current weights (a fresh optimizer each call).

        Returns:
            ``kl``, ``recon`` and ``loss`` of the last step.
        """
        idx = torch.as_tensor(np.asarray(data), dtype=torch.long)
        opt = torch.optim.Adam(self.parameters(), lr=self.config.lr)
        self.train()
        kl = recon = torch.zeros(())
        for _ in range(self.config.steps):
            opt.zero_grad(set_to_none=True)
            kl, recon = self.loss_terms(idx, generator=generator)
            (kl + recon).backward()
            opt.step()
        self.eval()
        kl, recon = float(kl.detach()), float(recon.detach())
        return {"kl": kl, "recon": recon, "loss": kl + recon}

    @torch.no_grad()
    def log_probs(self, z: np.ndarray) -> np.ndarray:
        """log p_θ(o | z) per decision and option: z (B, latent) → (B, D, max options), −inf where absent."""
        return torch.log_softmax(self.decode(torch.as_tensor(z, dtype=torch.float32)), dim=-1).numpy()

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` architectures from p_θ: z ~ N(0, I), then each decision from its categorical.

        Returns:
            (option indices (n, D) int64, their log-probabilities log p_θ(o | z) (n, D, max options)).
        """
        z = rng.standard_normal((n, self.config.latent))
        logp = self.log_probs(z)
        cdf = np.cumsum(np.exp(logp.astype(np.float64)), axis=-1)  # n, D, max options
        u = rng.random((n, len(self.num_options)))
        idx = (cdf < u[..., None] * cdf[..., -1:]).sum(-1)
        return np.minimum(idx, np.asarray(self.num_options) - 1).astype(np.int64), logp

    def probability(self, idx: Sequence[int], *, rng: np.random.Generator, samples: int = 4096) -> float:
        """p_θ(α) = E_{z ~ N(0, I)} Π_i p_θ(o_i | z), estimated with ``samples`` draws of z."""
        logp = self.log_probs(rng.standard_normal((samples, self.config.latent)))
        chosen = logp[:, np.arange(len(self.num_options)), np.asarray(idx, dtype=np.int64)].sum(-1)
        return float(np.exp(chosen.astype(np.float64)).mean())
