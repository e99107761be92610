"""The TNAS VAE (Yan et al. 2021, Sec. 3.2-3.3): the ELBO terms of Eq. 2 by hand on a 2-decision toy,
the masks of decisions with fewer options, and a decoder that learns one repeated architecture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwnas.errors import InputError
from hwnas.search.tnas_vae import ArchVae, VaeConfig, elbo_terms

INF = float("inf")


def test_elbo_terms_by_hand_on_two_decisions():
    # decision 0 has 2 options (third entry masked), decision 1 has 3
    logits = torch.tensor([[[0.0, math.log(3), -INF], [0.0, 0.0, math.log(2)]],
                           [[0.0, math.log(3), -INF], [0.0, 0.0, math.log(2)]]])
    target = torch.tensor([[1, 2], [0, 0]])
    mu = torch.tensor([[0.5, -1.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    kl, recon = elbo_terms(mu, logvar, logits, target)
    # row 0: ½(0.25 + 1 − 1 − 0) + ½(1 + 4 − 1 − log 4) = 1.431853; row 1: 0
    assert float(kl) == pytest.approx((0.125 + 0.5 * (4 - math.log(4))) / 2, abs=1e-6)
    # row 0: −log(3/4) − log(2/4); row 1: −log(1/4) − log(1/4)
    assert float(recon) == pytest.approx((-math.log(0.75) - math.log(0.5) - 2 * math.log(0.25)) / 2, abs=1e-6)


def test_the_models_loss_is_eq2_on_its_own_encoder_and_decoder():
    vae = ArchVae([2, 3], config=VaeConfig(d_model=8, heads=2, latent=2), seed=0)
    idx = torch.tensor([[1, 2], [0, 0], [1, 1]])
    with torch.no_grad():
        kl, recon = vae.loss_terms(idx, generator=torch.Generator().manual_seed(5))
        mu, logvar = vae.encode(idx)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
        want_kl, want_recon = elbo_terms(mu, logvar, vae.decode(z), idx)
    assert float(kl) == pytest.approx(float(want_kl)) and float(recon) == pytest.approx(float(want_recon))
    logits = vae.decode(torch.zeros(1, 2))
    assert logits[0, 0, 2] == -INF and torch.isfinite(logits[0, 1]).all()  # decision 0 has no option 2


def test_draws_respect_each_decisions_options_and_the_generator():
    vae = ArchVae([2, 3, 1], config=VaeConfig(), seed=1)
    a, logp = vae.sample(np.random.default_rng(3), 500)
    b, _ = vae.sample(np.random.default_rng(3), 500)
    assert np.array_equal(a, b) and a.shape == (500, 3) and logp.shape == (500, 3, 3)
    assert a[:, 0].max() <= 1 and a[:, 2].max() == 0 and set(a[:, 1]) == {0, 1, 2}
    # initial weights come from the seed, and the global generator is left alone
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    again = ArchVae([2, 3, 1], config=VaeConfig(), seed=1)
    assert torch.rand(1) == before
    assert all(torch.equal(p, q) for p, q in zip(vae.parameters(), again.parameters()))


def test_trained_on_one_repeated_architecture_the_decoder_generates_it():
    arch = np.array([3, 1, 4, 1, 0, 2])  # a NAS-Bench-201 cell (6 decisions of 5 options)
    vae = ArchVae([5] * 6, config=VaeConfig(steps=120), seed=0)
    rng = np.random.default_rng(0)
    assert vae.probability(arch, rng=rng) < 0.01  # 1/5^6 before training, roughly
    loss = vae.fit(np.stack([arch] * 10), generator=torch.Generator().manual_seed(0))
    assert loss["recon"] < 0.1
    assert vae.probability(arch, rng=rng) > 0.9  # z from the prior N(0, I)
    drawn, _ = vae.sample(rng, 200)
    assert (drawn == arch).all(axis=1).mean() > 0.9


def test_sizes_are_checked_with_the_flag_named():
    with pytest.raises(InputError, match="--tnas-d-model"):
        VaeConfig(d_model=30, heads=4)
    with pytest.raises(InputError, match="--tnas-latent"):
        VaeConfig(latent=0)
    assert ArchVae([5] * 6, config=VaeConfig(), seed=0).num_parameters() == 19413  # nasbench201, the docstring's
