"""Every stateless SPML baseline against an independent transcription of its paper.

Papers: AN, AN-LS, WAN, EPR (Cole et al., CVPR 2021); EM (Zhou et al., ECCV 2022);
LL-R, LL-Ct (Kim et al., CVPR 2022); Hill, SPLC (Zhang et al., arXiv:2112.07368);
Focal (Lin et al., ICCV 2017); ASL (Ridnik et al., ICCV 2021).

Each reference below is written from the formula, in float64 probability space
(``p = sigmoid(z)``, plain ``log``), sharing no code with the package; value and
gradient are compared on fixed tensors that include logits of ±30. The stateful
losses (ROLE, LL-Cp, EM+APL) are transcribed in test_state.py; the extreme-logit
and low-precision checks below cover every registered loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from spml_lightning.losses import (
    LOSSES,
    AssumeNegativeLoss,
    AsymmetricLoss,
    EntropyMaximizationLoss,
    ExpectedPositiveRegularizationLoss,
    FocalLoss,
    HillLoss,
    LabelSmoothedAssumeNegativeLoss,
    LargeLossRejectionLoss,
    LargeLossTemporaryCorrectionLoss,
    PerSampleStateLoss,
    SelfPacedLossCorrectionLoss,
    SPMLLoss,
    WeakAssumeNegativeLoss,
)

B, C = 12, 10


def make_batch(seed: int) -> tuple[Tensor, Tensor]:
    """Logits uniform in [-6, 6] with a few ±30 entries, one observed positive per row."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(B, C, generator=g) * 12 - 6
    logits[0, :4] = torch.tensor([30.0, -30.0, 30.0, -30.0])
    logits[1, :4] = torch.tensor([-30.0, 30.0, -30.0, 30.0])
    observed = torch.zeros(B, C)
    observed[torch.arange(B), torch.randint(C, (B,), generator=g)] = 1
    observed[0, 0] = observed[1, 0] = 1  # a positive at +30 and one at -30
    observed[0, 1:] = observed[1, 1:] = 0
    return logits, observed


def reference(entry_loss: Callable[..., Tensor], reduce: str = "mean", extra=None):
    """Value and gradient of ``reduce(entry_loss(z, p, q, s)) + extra(p)`` in float64.

    ``q = 1 - p`` is computed as ``sigmoid(-z)``: in float64, ``1 - sigmoid(30)`` has
    lost three digits to cancellation, which would be the reference's error, not ours.
    """

    def compute(logits: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        z = logits.detach().double().requires_grad_(True)
        p, q = torch.sigmoid(z), torch.sigmoid(-z)
        s = observed.double()
        entries = entry_loss(z, p, q, s)
        value = entries.mean() if reduce == "mean" else entries.sum()
        if extra is not None:
            value = value + extra(p)
        (grad,) = torch.autograd.grad(value, z)
        return value.detach(), grad

    return compute


def ours(loss: SPMLLoss, logits: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    x = logits.detach().clone().requires_grad_(True)
    value = loss(x, observed)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def an_ls(eps: float):
    def entry(z, p, q, s):
        positive = -(1 - eps) * torch.log(p) - eps * torch.log(q)
        unknown = -(1 - eps) * torch.log(q) - eps * torch.log(p)
        return s * positive + (1 - s) * unknown

    return reference(entry)


def wan():
    return reference(lambda z, p, q, s: s * -torch.log(p) + (1 - s) * -torch.log(q) / (C - 1))


def epr(k: float):
    return reference(
        lambda z, p, q, s: s * -torch.log(p), extra=lambda p: (p.sum(dim=1).mean() - k) ** 2 / C**2
    )


def em(alpha: float):
    return reference(
        lambda z, p, q, s: (
            s * -torch.log(p) + (1 - s) * alpha * (p * torch.log(p) + q * torch.log(q))
        )
    )


def hill(lam: float, margin: float, gamma: float, reduce: str):
    def entry(z, p, q, s):
        pm, qm = torch.sigmoid(z - margin), torch.sigmoid(margin - z)
        return s * -(qm**gamma) * torch.log(pm) + (1 - s) * (lam - p) * p**2

    return reference(entry, reduce)


def splc(tau: float, correcting: bool, margin: float, gamma: float, reduce: str):
    def entry(z, p, q, s):
        pm, qm = torch.sigmoid(z - margin), torch.sigmoid(margin - z)
        positive = -(qm**gamma) * torch.log(pm)
        as_negative = -(p**gamma) * torch.log(q)
        as_positive = -(q**gamma) * torch.log(p)
        flip = (p.detach() > tau) if correcting else torch.zeros_like(p, dtype=torch.bool)
        unknown = torch.where(flip, as_positive, as_negative)
        return s * positive + (1 - s) * unknown

    return reference(entry, reduce)


def asl(gamma_neg: float, gamma_pos: float, clip: float, reduce: str):
    def entry(z, p, q, s):
        positive = -(q**gamma_pos) * torch.log(p)
        shifted = torch.clamp(p - clip, min=0)
        negative = -(shifted**gamma_neg) * torch.log(torch.clamp(q + clip, max=1))
        return s * positive + (1 - s) * negative

    return reference(entry, reduce)


def large_loss(epoch: int, delta: float, correct: bool):
    def entry(z, p, q, s):
        an = -torch.log(q)
        k = math.ceil(B * C * epoch * delta - 1e-9)
        unknown_losses = np.where(s.numpy() == 0, an.detach().numpy(), -np.inf).ravel()
        largest = np.argsort(-unknown_losses, kind="stable")[:k]
        modified = torch.zeros(B * C, dtype=torch.bool)
        modified[torch.from_numpy(largest)] = True
        modified = modified.view(B, C)
        replacement = -torch.log(p) if correct else torch.zeros_like(p)
        return s * -torch.log(p) + (1 - s) * torch.where(modified, replacement, an)

    return reference(entry)


CASES = [
    pytest.param(
        AssumeNegativeLoss(),
        None,
        reference(lambda z, p, q, s: -(s * torch.log(p) + (1 - s) * torch.log(q))),
        id="AN",
    ),
    pytest.param(LabelSmoothedAssumeNegativeLoss(), None, an_ls(0.1), id="AN-LS"),
    pytest.param(
        LabelSmoothedAssumeNegativeLoss(smoothing=0.25), None, an_ls(0.25), id="AN-LS-0.25"
    ),
    pytest.param(WeakAssumeNegativeLoss(), None, wan(), id="WAN"),
    pytest.param(ExpectedPositiveRegularizationLoss(), None, epr(1.5), id="EPR-voc"),
    pytest.param(
        ExpectedPositiveRegularizationLoss(expected_positives=2.9), None, epr(2.9), id="EPR-coco"
    ),
    pytest.param(EntropyMaximizationLoss(), None, em(0.2), id="EM-voc"),
    pytest.param(EntropyMaximizationLoss(alpha=0.01), None, em(0.01), id="EM-cub"),
    pytest.param(HillLoss(), None, hill(1.5, 1.0, 2.0, "sum"), id="Hill"),
    pytest.param(
        HillLoss(lam=1.2, margin=0.5, gamma=1.0, reduction="mean"),
        None,
        hill(1.2, 0.5, 1.0, "mean"),
        id="Hill-mean",
    ),
    pytest.param(
        SelfPacedLossCorrectionLoss(), (0, 8), splc(0.6, False, 1.0, 2.0, "sum"), id="SPLC-epoch0"
    ),
    pytest.param(
        SelfPacedLossCorrectionLoss(), (1, 8), splc(0.6, True, 1.0, 2.0, "sum"), id="SPLC-epoch1"
    ),
    pytest.param(
        SelfPacedLossCorrectionLoss(tau=0.8, start_epoch=3, reduction="mean"),
        (3, 8),
        splc(0.8, True, 1.0, 2.0, "mean"),
        id="SPLC-tau0.8-start3",
    ),
    pytest.param(FocalLoss(), None, asl(2.0, 2.0, 0.0, "sum"), id="Focal"),
    pytest.param(AsymmetricLoss(), None, asl(4.0, 0.0, 0.05, "sum"), id="ASL"),
    pytest.param(
        AsymmetricLoss(gamma_neg=0.5, gamma_pos=1.0, clip=0.1, reduction="mean"),
        None,
        asl(0.5, 1.0, 0.1, "mean"),
        id="ASL-gamma0.5",
    ),
    pytest.param(
        AsymmetricLoss(gamma_neg=2.0, clip=0.0), None, asl(2.0, 0.0, 0.0, "sum"), id="ASL-noclip"
    ),
    pytest.param(LargeLossRejectionLoss(), (0, 8), large_loss(0, 0.005, False), id="LL-R-epoch0"),
    pytest.param(LargeLossRejectionLoss(), (3, 8), large_loss(3, 0.005, False), id="LL-R-epoch3"),
    pytest.param(
        LargeLossTemporaryCorrectionLoss(), (5, 8), large_loss(5, 0.002, True), id="LL-Ct-epoch5"
    ),
    pytest.param(
        LargeLossTemporaryCorrectionLoss(delta=0.02),
        (2, 8),
        large_loss(2, 0.02, True),
        id="LL-Ct-delta2pct",
    ),
]


@pytest.mark.parametrize(("loss", "epoch", "transcription"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_value_and_gradient_match_transcription(
    loss: SPMLLoss, epoch, transcription, seed: int
) -> None:
    if epoch is not None:
        loss.set_epoch(*epoch)
    logits, observed = make_batch(seed)
    value, grad = ours(loss, logits, observed)
    ref_value, ref_grad = transcription(logits, observed)
    assert value.dtype == torch.float32 and value.dim() == 0
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-7)


def test_large_loss_modifies_exactly_k_entries_and_rejects_by_loss() -> None:
    loss = LargeLossRejectionLoss(delta=0.05)
    loss.set_epoch(1, 8)  # r = 5 %: k = ceil(120 * 0.05) = 6
    logits, observed = make_batch(3)
    unknown = observed == 0
    mask = loss.large_loss_mask(torch.nn.functional.softplus(logits), unknown)
    assert int(mask.sum()) == 6 and not (mask & ~unknown).any()
    assert logits[mask].min() >= logits[unknown & ~mask].max()  # AN loss grows with z
    assert loss.set_epoch(0, 8) == {"ll_modified_fraction": 0.0}
    # k beyond the number of unknown entries modifies all of them and nothing else.
    greedy = LargeLossRejectionLoss(delta=0.9)
    greedy.set_epoch(2, 8)  # r = 1.8: k = 216 > 108 unknown entries
    assert torch.equal(greedy.large_loss_mask(logits, unknown), unknown)


def test_em_gradient_is_alpha_p_one_minus_p_z() -> None:
    # An independent closed form: d(-α·H(p))/dz = α·p(1-p)·z on unknown entries.
    logits, observed = make_batch(4)
    _, grad = ours(EntropyMaximizationLoss(alpha=0.3), logits, observed)
    p = torch.sigmoid(logits.double())
    expected = torch.where(observed.bool(), -(1 - p), 0.3 * p * (1 - p) * logits.double()) / (B * C)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------ every registered loss

EXTREMES = [-100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0]


def build(name: str, num_samples: int, observed: Tensor) -> SPMLLoss:
    loss = LOSSES[name]()
    if isinstance(loss, PerSampleStateLoss):
        loss.bind_train_set(observed.repeat(num_samples // observed.shape[0], 1))
    loss.set_epoch(6, 8)  # every schedule, warm-up and rejection rate active
    return loss.train()


def batch_inputs(loss: SPMLLoss, observed: Tensor) -> dict[str, Tensor]:
    """The extra batch entries a loss takes: pseudo-positives on every other unknown column."""
    pseudo = torch.zeros_like(observed)
    pseudo[:, 1::2] = 1
    return {name: pseudo for name in loss.batch_inputs}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", list(LOSSES))
def test_extreme_logits_low_precision_stay_finite_and_trainable(
    name: str, dtype: torch.dtype
) -> None:
    n = len(EXTREMES)
    # Row r is the extremes rotated by r with its positive in column 0, so every
    # extreme value occurs both as a positive and as an unknown.
    rows = torch.tensor([EXTREMES[r:] + EXTREMES[:r] for r in range(n)])
    observed = torch.zeros(n, n)
    observed[:, 0] = 1
    index = torch.arange(n)
    leaf = rows.to(dtype).requires_grad_(True)
    loss = build(name, 2 * n, observed)
    reference_loss = build(name, 2 * n, observed)
    extra = batch_inputs(loss, observed)
    value = loss(leaf, observed, index, **extra)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert leaf.grad is not None and leaf.grad.dtype == dtype and torch.isfinite(leaf.grad).all()
    # The loss computes in fp32: the same value as on fp32 copies of the inputs.
    torch.testing.assert_close(
        value, reference_loss(rows.to(dtype).float(), observed, index, **extra), rtol=1e-6, atol=0
    )
    # A positive at logit -30 is pushed up (a probability-space loss with
    # log(p + eps) would give it almost no gradient).
    row = [r for r in range(n) if rows[r, 0] == -30.0][0]
    assert leaf.grad[row, 0].item() < 0


@pytest.mark.parametrize("name", list(LOSSES))
def test_autocast_gives_fp32(name: str) -> None:
    logits, observed = make_batch(5)
    loss = build(name, 2 * B, observed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = torch.nn.functional.linear(logits, torch.eye(C))
        assert low.dtype == torch.bfloat16
        value = loss.eval()(low, observed, torch.arange(B), **batch_inputs(loss, observed))
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: LabelSmoothedAssumeNegativeLoss(smoothing=1.0), "smoothing"),
        (lambda: ExpectedPositiveRegularizationLoss(expected_positives=0), "expected_positives"),
        (lambda: EntropyMaximizationLoss(alpha=-0.1), "alpha"),
        (lambda: HillLoss(gamma=-1), "gamma"),
        (lambda: HillLoss(reduction="none"), "reduction"),
        (lambda: SelfPacedLossCorrectionLoss(tau=1.5), "tau"),
        (lambda: SelfPacedLossCorrectionLoss(start_epoch=-1), "start_epoch"),
        (lambda: FocalLoss(gamma=float("nan")), "gamma"),
        (lambda: AsymmetricLoss(clip=1.0), "clip"),
        (lambda: LargeLossRejectionLoss(delta=0.0), "delta"),
        (lambda: LargeLossTemporaryCorrectionLoss(delta="0.1"), "delta"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_wan_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        WeakAssumeNegativeLoss()(torch.zeros(2, 1), torch.ones(2, 1))


def test_registry_has_every_baseline_and_only_full_reads_targets() -> None:
    names = [
        "full",
        "AN",
        "AN-LS",
        "WAN",
        "EPR",
        "ROLE",
        "EM",
        "EM+APL",
        "LL-R",
        "LL-Ct",
        "LL-Cp",
        "Hill",
        "SPLC",
        "Focal",
        "ASL",
        "GR",
        "GPR",
        "VLPL",
    ]
    assert list(LOSSES) == names
    assert [name for name, cls in LOSSES.items() if cls.trains_on_targets] == ["full"]
    for cls in LOSSES.values():
        doc = cls.__doc__ or ""
        assert any(venue in doc for venue in ("CVPR", "ICCV", "ECCV", "IJCAI", "arXiv")), (
            cls.__name__
        )
