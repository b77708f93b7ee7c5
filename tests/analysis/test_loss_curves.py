"""Loss gradients w.r.t. an unknown logit and k̂ curves, against GR Loss's closed forms.

GR Loss: Chen et al., IJCAI 2024 (arXiv:2405.03501), with the epoch ramp of its published
code (github.com/yan4xi1/GRLoss).
"""

import math

import numpy as np
import pytest
import torch

from spml_lightning.analysis import loss_curves
from spml_lightning.analysis.loss_curves import (
    default_losses,
    probability_grid,
    pseudo_label_curve,
    unknown_logit_gradient,
)
from spml_lightning.losses import LOSSES, AssumeNegativeLoss, GRLoss, SPMLLoss

P = probability_grid(49)


def reference_schedule(epoch, max_epochs, beta, alpha, linear_init=0):
    """The published ramp: e = epoch + 1, beta ramps with e - n - 1, alpha with e - n."""
    e, n, t = epoch + 1, linear_init, max_epochs
    w0, wt, b0, bt = beta
    mu0, s0, mut, st = alpha
    fb, fa = max(e - n - 1, 0) / (t - n), max(e - n, 0) / (t - n)
    return w0 + (wt - w0) * fb, b0 + (bt - b0) * fb, mu0 + (mut - mu0) * fa, s0 + (st - s0) * fa


def closed_form_gr_gradient(p, w, b, mu, sigma, q2, q3):
    """An unknown entry's gradient, k̂ and v constant.

    dl/dz = v * [-k p^q2 (1 - p) + (1 - k) p (1 - p)^q3]
    """
    k = 1 / (1 + np.exp(-(w * p + b)))
    v = np.exp(-((p - mu) ** 2) / (2 * sigma**2))
    return v * (-k * p**q2 * (1 - p) + (1 - k) * p * (1 - p) ** q3)


@pytest.mark.parametrize("epoch", [0, 3, 7])
@pytest.mark.parametrize("q2,q3", [(0.01, 1.0), (0.5, 1.5)])
def test_gr_gradient_matches_the_closed_form(epoch, q2, q3):
    beta, alpha = (0.0, 10.0, -2.0, -8.0), (0.5, 2.0, 0.8, 0.5)
    loss = GRLoss(beta=beta, alpha=alpha, q2=q2, q3=q3)
    got = unknown_logit_gradient(loss, P, epoch=epoch, max_epochs=8)
    expected = closed_form_gr_gradient(P, *reference_schedule(epoch, 8, beta, alpha), q2, q3)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_gr_bayes_form_gradient_matches_the_closed_form():
    a = 1 / 2.94
    loss = GRLoss(k_form="bayes", bayes_a=a)
    k = (1 - a) * P / (1 - a * P)
    mu, sigma = 0.5, 2.0  # start values, no set_epoch
    v = np.exp(-((P - mu) ** 2) / (2 * sigma**2))
    expected = v * (-k * P**0.01 * (1 - P) + (1 - k) * P * (1 - P))
    np.testing.assert_allclose(unknown_logit_gradient(loss, P), expected, atol=2e-6)


def test_assume_negative_gradient_is_p():
    # d/dz of -log(1 - sigmoid(z)) is sigmoid(z).
    np.testing.assert_allclose(unknown_logit_gradient(AssumeNegativeLoss(), P), P, atol=1e-6)


def test_scale_undoes_the_mean_over_entries():
    base = unknown_logit_gradient(AssumeNegativeLoss(), P, scale=1.0)
    np.testing.assert_allclose(base * 2, P, atol=1e-6)


def test_every_registered_loss_gets_a_finite_curve():
    losses, failures = default_losses()
    assert not failures, failures
    expected = {name for name, cls in LOSSES.items() if not cls.trains_on_targets}
    assert set(losses) == expected
    for name, loss in losses.items():
        curve = unknown_logit_gradient(loss, P, epoch=2, max_epochs=8)
        assert curve.shape == P.shape and np.isfinite(curve).all(), name


def test_the_given_loss_is_left_unchanged():
    loss = GRLoss(k_form="learned", num_classes=2)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    unknown_logit_gradient(loss, P, epoch=5, max_epochs=8)
    after = loss.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert loss.current.w == 0.0 and loss.training  # schedule untouched, mode untouched


def test_default_losses_report_what_they_cannot_build(monkeypatch):
    class NeedsArgument(SPMLLoss):
        def __init__(self, required: float) -> None:
            super().__init__()

        def forward(self, logits, observed, index=None):
            return logits.sum()

    monkeypatch.setitem(LOSSES, "needs", NeedsArgument)
    losses, failures = default_losses()
    assert "needs" in failures and "required" in failures["needs"]
    built, failures = default_losses({"needs": {"required": 1.0}})
    assert "needs" in built and not failures
    with pytest.raises(ValueError, match="No registered loss"):
        default_losses({"nope": {}})


def test_gradient_input_checks():
    with pytest.raises(ValueError, match="strictly inside"):
        unknown_logit_gradient(AssumeNegativeLoss(), np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="max_epochs"):
        unknown_logit_gradient(GRLoss(), P, epoch=1)


def test_pseudo_label_curve_follows_the_schedule():
    loss = GRLoss(beta=(0.0, 2.0, -2.0, -2.0))
    loss.set_epoch(1, 2)
    w, b, _, _ = reference_schedule(1, 2, (0.0, 2.0, -2.0, -2.0), (0.5, 2.0, 0.8, 0.5))
    assert (w, b) == (1.0, -2.0)
    expected = [1 / (1 + math.exp(-(w * p + b))) for p in P]
    np.testing.assert_allclose(pseudo_label_curve(loss, P), expected, rtol=1e-6)


def test_pseudo_label_curve_of_other_forms_and_losses():
    a = 1 / 1.46
    bayes = pseudo_label_curve(GRLoss(k_form="bayes", bayes_a=a), P)
    np.testing.assert_allclose(bayes, (1 - a) * P / (1 - a * P), rtol=1e-6)
    learned = pseudo_label_curve(GRLoss(k_form="learned", num_classes=3), P)
    assert learned.shape == (3, len(P))
    initial = 1 / (1 + np.exp(2.0))  # k̂ = sigmoid(0·p - 2) before any training
    np.testing.assert_allclose(learned, np.broadcast_to(initial, learned.shape), rtol=1e-6)
    assert pseudo_label_curve(AssumeNegativeLoss(), P) is None


def test_probability_grid_is_open():
    grid = loss_curves.probability_grid(3)
    np.testing.assert_allclose(grid, [0.25, 0.5, 0.75])


def test_side_by_side_gradients_report_losses_that_cannot_be_placed():
    from spml_lightning.analysis.loss_curves import unknown_logit_gradients

    losses = {"GR": GRLoss(), "EM+APL": LOSSES["EM+APL"](), "ROLE": LOSSES["ROLE"]()}
    p = np.array([0.2, 0.8])
    # A 2-epoch run cannot hold EM+APL's default 5-epoch warm-up: reported, not raised.
    curves, failures = unknown_logit_gradients(losses, p, epoch=1, max_epochs=2)
    assert set(curves) == {"GR", "ROLE"} and set(failures) == {"EM+APL"}
    assert "warmup_epochs" in failures["EM+APL"]
    # Stateful losses are probed with a fresh one-image state and give finite curves.
    assert np.isfinite(curves["ROLE"]).all()
    gr_alone = unknown_logit_gradient(GRLoss(), p, epoch=1, max_epochs=2)
    np.testing.assert_allclose(curves["GR"], gr_alone)
