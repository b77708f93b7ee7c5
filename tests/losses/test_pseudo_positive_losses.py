"""GPR Loss (AEVLP) and VLPL's loss against float64 references written from the papers.

The references transcribe, in probability space and float64, the per-entry formulas of
Tran et al., ICCV 2025 (arXiv:2508.20381) and Xing et al., CVPR-W 2024
(arXiv:2310.15985) as the project's SPEC §8 states them; they share nothing with the
package. Values and gradients are compared for each kind of entry (observed positive,
pseudo-positive, unknown) at several epochs of GR's schedule.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from spml_lightning.losses import LOSSES, GPRLoss, VisionLanguagePseudoLabelLoss, as_spml_loss

B, C = 6, 5


def batch(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Logits in [-5, 5], one observed positive per row, and pseudo-positives elsewhere."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.rand(B, C, generator=g, dtype=torch.float64) * 10 - 5).requires_grad_()
    observed = torch.zeros(B, C)
    observed[torch.arange(B), torch.randint(C, (B,), generator=g)] = 1
    pseudo = (torch.rand(B, C, generator=g) < 0.4).float()
    pseudo[0, :] = 0  # a row without pseudo-positive
    pseudo[1, observed[1].argmax()] = 1  # a pseudo-positive on the observed positive
    return logits, observed, pseudo


def reference_schedule(epoch: int, epochs: int, beta, alpha) -> tuple[float, ...]:
    """GR's published schedule (SPEC §2), 1-based e = epoch + 1, no linear_init."""
    e = epoch + 1
    f_beta, f_alpha = max(e - 1, 0) / epochs, min(e / epochs, 1.0)
    w = beta[0] + (beta[1] - beta[0]) * f_beta
    b = beta[2] + (beta[3] - beta[2]) * f_beta
    mu = alpha[0] + (alpha[2] - alpha[0]) * f_alpha
    sigma = alpha[1] + (alpha[3] - alpha[1]) * f_alpha
    return w, b, mu, sigma


def gpr_reference(z, o, pl, epoch, epochs, *, beta, alpha, q2, q3, l1, l2, rho, reg, k_exp):
    """Per-entry GPR Loss in probability space, float64, then the mean plus the regulariser."""
    w, b, mu, sigma = reference_schedule(epoch, epochs, beta, alpha)
    p = torch.sigmoid(z)
    ph = p.detach()
    v = torch.exp(-((ph - mu) ** 2) / (2 * sigma**2))
    k = 1 / (1 + torch.exp(-(w * ph + b)))
    positive = -torch.log(p)
    pseudo = (1 - torch.clamp(v, 1 - l1, 1 - l2)) * (
        rho * -torch.log(p) + (1 - rho) * -torch.log(1 - p)
    )
    unknown = v * (k * (1 - p**q2) / q2 + (1 - k) * (1 - (1 - p) ** q3) / q3)
    is_pos, is_pl = o == 1, (o == 0) & (pl == 1)
    entries = torch.where(is_pos, positive, torch.where(is_pl, pseudo, unknown))
    regularizer = (p.sum(1).mean() - k_exp) ** 2 / p.shape[1] ** 2
    return entries.mean() + reg * regularizer, entries


def vlpl_reference(z, o, pl, *, alpha, beta_pos, rho):
    """Per-entry VLPL loss in probability space, float64, then the mean."""
    p = torch.sigmoid(z)
    positive = -torch.log(p)
    pseudo = beta_pos * (rho * -torch.log(p) + (1 - rho) * -torch.log(1 - p))
    unknown = alpha * (p * torch.log(p) + (1 - p) * torch.log(1 - p))
    is_pos, is_pl = o == 1, (o == 0) & (pl == 1)
    entries = torch.where(is_pos, positive, torch.where(is_pl, pseudo, unknown))
    return entries.mean(), entries


def grads(loss: Tensor, z: Tensor) -> Tensor:
    return torch.autograd.grad(loss, z)[0]


GPR_SETTINGS = [
    # VOC (the defaults) and CUB's published settings (SPEC §8).
    dict(beta=(0, 2, -2, -2), alpha=(0.5, 2, 0.8, 0.5), q2=0.01, q3=1.0,
         l1=0.7, l2=0.4, rho=0.9, reg=0.05, k_exp=1.5),
    dict(beta=(0, 10, -2, -8), alpha=(0.5, 2, 0.8, 0.5), q2=0.01, q3=1.5,
         l1=0.8, l2=0.2, rho=0.9, reg=0.01, k_exp=31.4),
]  # fmt: skip


@pytest.mark.parametrize("settings", GPR_SETTINGS, ids=["voc", "cub"])
@pytest.mark.parametrize("epoch", [0, 3, 7])
def test_gpr_matches_the_float64_reference_for_every_kind_of_entry(settings, epoch):
    z, o, pl = batch(seed=epoch)
    loss = GPRLoss(
        beta=settings["beta"], alpha=settings["alpha"], q2=settings["q2"], q3=settings["q3"],
        lambda1=settings["l1"], lambda2=settings["l2"], rho=settings["rho"],
        reg=settings["reg"], expected_positives=settings["k_exp"],
    )  # fmt: skip
    loss.set_epoch(epoch, 8)
    value = loss(z, o, pseudo_positive=pl)
    expected, entries = gpr_reference(z, o, pl, epoch, 8, **settings)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    mine, theirs = grads(value, z), grads(expected, z)
    for kind, mask in {
        "observed positive": o == 1,
        "pseudo-positive": (o == 0) & (pl == 1),
        "unknown": (o == 0) & (pl == 0),
    }.items():
        assert mask.any(), f"the batch has no {kind} entry"
        torch.testing.assert_close(mine[mask], theirs[mask], rtol=1e-4, atol=1e-7, msg=kind)


def _regularizer(z: Tensor, k_exp: float) -> Tensor:
    p = torch.sigmoid(z.float())
    return (p.sum(1).mean() - k_exp) ** 2 / p.shape[1] ** 2


def test_gpr_pseudo_positive_weight_stays_in_lambda2_lambda1():
    loss = GPRLoss(lambda1=0.7, lambda2=0.4, rho=1.0, reg=0.0)
    loss.set_epoch(7, 8)
    z = torch.linspace(-8, 8, 41).reshape(1, -1)
    weight = loss.pseudo_positive_loss(z) / torch.nn.functional.softplus(-z)
    assert weight.min().item() == pytest.approx(0.4, abs=1e-6)
    assert weight.max().item() == pytest.approx(0.7, abs=1e-6)


def test_gpr_without_pseudo_positives_is_gr_loss_plus_the_regulariser():
    from spml_lightning.losses import GRLoss

    z, o, _ = batch(seed=3)
    gpr, gr = GPRLoss(reg=0.05), GRLoss()
    for loss in (gpr, gr):
        loss.set_epoch(2, 8)
    plain = gpr(z, o, pseudo_positive=torch.zeros_like(o))
    expected = gr(z, o) + 0.05 * _regularizer(z, 1.5)
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("alpha,beta_pos,rho", [(0.2, 0.7, 0.9), (0.01, 1.3, 1.0)])
def test_vlpl_matches_the_float64_reference_for_every_kind_of_entry(alpha, beta_pos, rho):
    z, o, pl = batch(seed=11)
    loss = VisionLanguagePseudoLabelLoss(alpha=alpha, beta_pos=beta_pos, rho=rho)
    value = loss(z, o, pseudo_positive=pl)
    expected, _ = vlpl_reference(z, o, pl, alpha=alpha, beta_pos=beta_pos, rho=rho)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    mine = grads(loss(z, o, pseudo_positive=pl), z)
    expected, _ = vlpl_reference(z, o, pl, alpha=alpha, beta_pos=beta_pos, rho=rho)
    theirs = grads(expected, z)
    for mask in (o == 1, (o == 0) & (pl == 1), (o == 0) & (pl == 0)):
        assert mask.any()
        torch.testing.assert_close(mine[mask], theirs[mask], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["GPR", "VLPL"])
def test_the_losses_refuse_a_batch_without_or_with_bad_pseudo_positives(name):
    loss = as_spml_loss(name)
    z, o, pl = batch(seed=0)
    with pytest.raises(ValueError, match="data.init_args.prior"):
        loss(z, o)
    with pytest.raises(ValueError, match="same images and classes"):
        loss(z, o, pseudo_positive=pl[:, :2])
    with pytest.raises(ValueError, match="pseudo_positive must contain only 0"):
        loss(z, o, pseudo_positive=pl * 0.5)


def test_registry_names_and_config_round_trip():
    assert LOSSES["GPR"] is GPRLoss and LOSSES["VLPL"] is VisionLanguagePseudoLabelLoss
    assert GPRLoss.batch_inputs == ("pseudo_positive",)
    loss = GPRLoss(lambda1=0.8, lambda2=0.2, q3=1.5, reg=0.01, expected_positives=31.4)
    again = as_spml_loss(loss.config())
    assert again.init_args == loss.init_args and again.lambda2 == 0.2


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lambda1=0.3, lambda2=0.5), "must not exceed lambda1"),
        (dict(rho=1.5), "rho"),
        (dict(reg=-1.0), "reg"),
        (dict(expected_positives=0.0), "expected_positives"),
    ],
)
def test_gpr_refuses_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPRLoss(**kwargs)


def test_gpr_with_the_learned_k_trains_it_on_the_unknowns_only():
    z, o, pl = batch(seed=5)
    loss = GPRLoss(k_form="learned", num_classes=C).train()
    before = loss.k_bias.clone()
    loss(z.detach().float(), o, pseudo_positive=pl)
    assert not torch.equal(loss.k_bias, before)
    # A class whose every unobserved entry is a pseudo-positive gets no k̂ gradient from the
    # loss, only weight decay (its bias moves by lr * weight_decay * b exactly).
    all_pseudo = torch.ones_like(o)
    again = GPRLoss(k_form="learned", num_classes=C).train()
    again(z.detach().float(), o, pseudo_positive=all_pseudo)
    expected = -2.0 - 0.1 * (1e-3 * -2.0)
    torch.testing.assert_close(again.k_bias, torch.full((C,), expected))
