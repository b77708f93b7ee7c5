"""Tests of GRLoss, its framework blocks and the loss base class.

The reference values come from an independent float64 transcription, in
probability space, of GR Loss as Chen et al., IJCAI 2024 (arXiv:2405.03501)
define it, written here and not shared with the package.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import Tensor

from spml_lightning.losses import LOSSES, GRLoss, SPMLLoss, get_loss_class
from spml_lightning.losses.functional import (
    bayes_pseudo_label,
    gaussian_weight,
    generalized_negative_loss,
    generalized_positive_loss,
    neg_log_one_minus_sigmoid,
    neg_log_sigmoid,
    sigmoid_pseudo_label,
)

from ddp_harness import run_ranks

B, C = 16, 20


def make_batch(seed: int, batch: int = B, classes: int = C) -> tuple[Tensor, Tensor]:
    """Logits uniform in [-6, 6] and one observed positive per row."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(batch, classes, generator=g) * 12 - 6
    observed = torch.zeros(batch, classes)
    observed[torch.arange(batch), torch.randint(classes, (batch,), generator=g)] = 1
    return logits, observed


def reference_gr(
    logits: Tensor,
    observed: Tensor,
    w: float | Tensor,
    b: float | Tensor,
    mu: float,
    sigma: float,
    q2: float,
    q3: float,
    bayes_a: float | None = None,
) -> tuple[Tensor, Tensor]:
    """GR Loss transcribed literally in float64 probability space: (value, d value / d logits).

    -log p on observed positives; v(p̂)·[k̂(p̂)·(1 - p^q2)/q2 + (1 - k̂(p̂))·(1 - (1-p)^q3)/q3]
    on unknown entries, k̂ = sigmoid(w·p̂ + b) (or the Bayes form), v = exp(-(p̂ - μ)²/2σ²),
    p̂ = p detached; the mean over all B·C entries.
    """
    z = logits.detach().double().requires_grad_(True)
    p = torch.sigmoid(z)
    p_hat = p.detach()
    if bayes_a is None:
        k = torch.sigmoid(w * p_hat + b)
    else:
        k = (1 - bayes_a) * p_hat / (1 - bayes_a * p_hat)
    v = torch.exp(-((p_hat - mu) ** 2) / (2 * sigma**2))
    l1 = -torch.log(p)
    l2 = (1 - p**q2) / q2
    l3 = (1 - (1 - p) ** q3) / q3
    s = observed.double()
    value = (s * l1 + (1 - s) * v * (k * l2 + (1 - k) * l3)).mean()
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def loss_and_grad(loss: GRLoss, logits: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    x = logits.detach().clone().requires_grad_(True)
    value = loss(x, observed)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


# (constructor kwargs, epoch/max_epochs or None, hand-computed (w, b, mu, sigma) in force)
SETTINGS = [
    pytest.param({}, None, (0.0, -2.0, 0.5, 2.0), id="voc-defaults-before-set-epoch"),
    pytest.param({}, (3, 8), (0.75, -2.0, 0.65, 1.25), id="voc-epoch3of8"),
    pytest.param(
        {"beta": (0, 10, -2, -8), "q3": 1.5},
        (5, 8),
        (6.25, -5.75, 0.725, 0.875),
        id="coco-beta-q3-1.5-epoch5of8",
    ),
    pytest.param(
        {"q2": 0.5, "q3": 0.3}, (7, 8), (1.75, -2.0, 0.8, 0.5), id="q2-0.5-q3-0.3-last-epoch"
    ),
    pytest.param(
        {"beta": (1, 3, 0, -4), "alpha": (0.2, 0.3, 0.6, 0.1), "schedule": "linear"},
        (2, 5),
        (2.0, -2.0, 0.4, 0.2),
        id="linear-schedule-epoch2of5",
    ),
]


@pytest.mark.parametrize(("kwargs", "epoch", "params"), SETTINGS)
def test_value_and_gradient_match_reference(
    kwargs: dict, epoch: tuple[int, int] | None, params: tuple
) -> None:
    loss = GRLoss(**kwargs)
    if epoch is not None:
        loss.set_epoch(*epoch)
    logits, observed = make_batch(0)
    value, grad = loss_and_grad(loss, logits, observed)
    w, b, mu, sigma = params
    ref_value, ref_grad = reference_gr(logits, observed, w, b, mu, sigma, loss.q2, loss.q3)
    assert value.dtype == torch.float32 and value.dim() == 0
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("k_form", ["sigmoid", "bayes"])
def test_gradient_is_closed_form_with_constant_k_and_v(k_form: str) -> None:
    loss = GRLoss(beta=(0, 10, -2, -8), q2=0.2, q3=1.5, k_form=k_form, bayes_a=1 / 2.94)
    loss.set_epoch(4, 8)  # w = 5, b = -5, mu = 0.6875, sigma = 1.0625
    logits, observed = make_batch(1)
    _, grad = loss_and_grad(loss, logits, observed)

    p = torch.sigmoid(logits.double())
    a = 1 / 2.94
    k = torch.sigmoid(5.0 * p - 5.0) if k_form == "sigmoid" else (1 - a) * p / (1 - a * p)
    v = torch.exp(-((p - 0.6875) ** 2) / (2 * 1.0625**2))
    unknown_grad = v * (-k * p**0.2 * (1 - p) + (1 - k) * p * (1 - p) ** 1.5)
    expected = torch.where(observed.bool(), -(1 - p), unknown_grad) / (B * C)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-9)


def test_bayes_form_value_matches_reference() -> None:
    loss = GRLoss(k_form="bayes", bayes_a=1 / 1.46, q3=1.5)
    assert loss.set_epoch(2, 8) == pytest.approx({"mu": 0.6125, "sigma": 1.4375})
    logits, observed = make_batch(2)
    value, grad = loss_and_grad(loss, logits, observed)
    ref_value, ref_grad = reference_gr(
        logits, observed, 0.0, 0.0, 0.6125, 1.4375, 0.01, 1.5, bayes_a=1 / 1.46
    )
    torch.testing.assert_close(value.double(), ref_value, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-9)
    # The Bayes form ignores the scheduled (w, b): a sigmoid-form loss differs.
    other = GRLoss(q3=1.5)
    other.set_epoch(2, 8)
    assert not torch.allclose(other(logits, observed), value)


EXTREMES = [0.0, 10.0, -10.0, 30.0, -30.0, 60.0, -60.0, 100.0, -100.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("k_form", ["sigmoid", "bayes", "learned"])
def test_extreme_logits_low_precision_stay_finite_and_trainable(
    dtype: torch.dtype, k_form: str
) -> None:
    n = len(EXTREMES)
    # Row r is the extremes rotated by r; its positive is column 0, so every
    # extreme value occurs both as a positive and as an unknown.
    rows = [EXTREMES[r:] + EXTREMES[:r] for r in range(n)]
    leaf = torch.tensor(rows, dtype=dtype, requires_grad=True)
    observed = torch.zeros(n, n, dtype=torch.uint8)
    observed[:, 0] = 1
    loss = GRLoss(beta=(0, 10, -2, -8), q3=1.5, k_form=k_form, num_classes=n)
    loss.set_epoch(7, 8)
    loss.train()
    value = loss(leaf, observed)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert leaf.grad is not None and leaf.grad.dtype == dtype
    assert torch.isfinite(leaf.grad).all()
    # A positive at logit -100 still gets the full -1/(B·C) push (probability
    # space with log(p + 1e-7) would give 0 here).
    row = rows.index(EXTREMES[-1:] + EXTREMES[:-1])
    assert leaf.grad[row, 0].item() == pytest.approx(-1 / (n * n), rel=1e-2)
    if k_form == "learned":
        assert all(torch.isfinite(t).all() for t in loss.state_dict().values())


def test_autocast_input_gives_fp32_loss_equal_to_fp32_computation() -> None:
    logits, observed = make_batch(3)
    loss = GRLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = torch.nn.functional.linear(logits, torch.eye(C))
        assert low.dtype == torch.bfloat16
        value = loss(low, observed)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(low.float(), observed), rtol=0, atol=0)


# ---------------------------------------------------------------- learned k̂


def test_learned_steps_match_torch_sgd_on_independent_autograd_loss() -> None:
    loss = GRLoss(k_form="learned", num_classes=C, q3=1.5)
    loss.set_epoch(1, 8)  # mu = 0.575, sigma = 1.625
    # Independent model of the same update: float64 parameters, the transcribed
    # loss with k̂ NOT detached, and torch.optim.SGD itself.
    w = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    b = torch.full((C,), -2.0, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([w, b], lr=0.1, momentum=0.9, weight_decay=1e-3)
    loss.train()
    for step in range(3):
        logits, observed = make_batch(10 + step)
        p_hat = torch.sigmoid(logits.double())
        k = torch.sigmoid(w * p_hat + b)
        v = torch.exp(-((p_hat - 0.575) ** 2) / (2 * 1.625**2))
        l2 = (1 - p_hat**0.01) / 0.01
        l3 = (1 - (1 - p_hat) ** 1.5) / 1.5
        s = observed.double()
        ref = (s * -torch.log(p_hat) + (1 - s) * v * (k * l2 + (1 - k) * l3)).mean()

        before = loss.k_bias.clone()
        value = loss(logits, observed)
        # The returned value uses the pre-update k̂.
        torch.testing.assert_close(value.double(), ref.detach(), rtol=1e-5, atol=0.0)

        sgd.zero_grad()
        ref.backward()
        sgd.step()
        delta = (loss.k_bias - before).abs().max().item()
        assert delta > 1e-4, "the update is too small for this test to detect an error"
        torch.testing.assert_close(loss.k_weight.double(), w.detach(), rtol=0, atol=2e-6)
        torch.testing.assert_close(loss.k_bias.double(), b.detach(), rtol=0, atol=2e-6)


def test_learned_step_reduces_the_loss() -> None:
    loss = GRLoss(k_form="learned", num_classes=C, learned_weight_decay=0.0)
    logits, observed = make_batch(20)
    loss.eval()
    before = loss(logits, observed)
    loss.train()
    loss(logits, observed)
    loss.eval()
    after = loss(logits, observed)
    assert after < before


def test_learned_eval_mode_does_not_update() -> None:
    loss = GRLoss(k_form="learned", num_classes=C).eval()
    state = {k: t.clone() for k, t in loss.state_dict().items()}
    loss(*make_batch(21))
    for key, tensor in loss.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_learned_buffers_in_state_dict_and_round_trip() -> None:
    loss = GRLoss(k_form="learned", num_classes=C)
    assert set(loss.state_dict()) == {"k_weight", "k_bias", "k_weight_momentum", "k_bias_momentum"}
    assert torch.equal(loss.k_weight, torch.zeros(C)) and torch.equal(
        loss.k_bias, torch.full((C,), -2.0)
    )
    assert list(loss.parameters()) == []  # never seen by the main optimizer
    loss.train()
    loss(*make_batch(22))
    restored = GRLoss(k_form="learned", num_classes=C)
    restored.load_state_dict(loss.state_dict())
    for key, tensor in loss.state_dict().items():
        assert torch.equal(restored.state_dict()[key], tensor), key
    # The schedule is a function of the epoch, not state: other forms have none.
    assert GRLoss().state_dict() == {}


def test_learned_logits_gradient_treats_k_as_constant() -> None:
    loss = GRLoss(k_form="learned", num_classes=C)
    with torch.no_grad():
        loss.k_weight.copy_(torch.linspace(-3, 3, C))
        loss.k_bias.copy_(torch.linspace(1, -2, C))
    # Even if someone makes the buffers require grad, the main graph must not
    # reach them.
    loss.k_weight.requires_grad_(True)
    loss.k_bias.requires_grad_(True)
    w0, b0 = loss.k_weight.detach().clone(), loss.k_bias.detach().clone()
    loss.train()
    logits, observed = make_batch(23)
    x = logits.clone().requires_grad_(True)
    loss(x, observed).backward()
    grad = x.grad
    _, ref_grad = reference_gr(logits, observed, w0.double(), b0.double(), 0.5, 2.0, 0.01, 1.0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-9)
    assert loss.k_weight.grad is None and loss.k_bias.grad is None
    assert not torch.equal(loss.k_bias.detach(), b0)  # yet it trained


def test_learned_trains_under_no_grad() -> None:
    loss = GRLoss(k_form="learned", num_classes=C).train()
    with torch.no_grad():
        loss(*make_batch(24))
    assert not torch.equal(loss.k_bias, torch.full((C,), -2.0))


def test_learned_num_classes_later_and_errors() -> None:
    loss = GRLoss(k_form="learned")
    with pytest.raises(ValueError, match="num_classes"):
        loss(*make_batch(25))
    loss.set_num_classes(C)
    loss.set_num_classes(C)  # same C again: a no-op
    assert loss.k_bias.shape == (C,)
    loss(*make_batch(25))
    with pytest.raises(ValueError, match="num_classes"):
        loss.set_num_classes(C + 1)
    with pytest.raises(ValueError, match="num_classes"):
        loss(*make_batch(25, classes=C + 1))
    with pytest.raises(ValueError, match="num_classes"):
        GRLoss(k_form="learned", num_classes=0)


def _ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    loss = GRLoss(k_form="learned", num_classes=C).train()
    loss(*make_batch(100 + rank))
    torch.save(loss.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_learned_ddp_ranks_stay_identical_with_averaged_gradient(tmp_path: Path) -> None:
    run_ranks(_ddp_worker, tmp_path, str(tmp_path))
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # Expected: one SGD step (first step: buf = d) with the rank-averaged gradient.
    w = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    b = torch.full((C,), -2.0, dtype=torch.float64, requires_grad=True)
    total = 0.0
    for rank in range(2):
        logits, observed = make_batch(100 + rank)
        p_hat = torch.sigmoid(logits.double())
        k = torch.sigmoid(w * p_hat + b)
        v = torch.exp(-((p_hat - 0.5) ** 2) / (2 * 2.0**2))
        unknown = (1 - observed.double()) * v * (k * (1 - p_hat**0.01) / 0.01 + (1 - k) * p_hat)
        total = total + unknown.mean() / 2
    gw, gb = torch.autograd.grad(total, (w, b))
    expected_b = -2.0 - 0.1 * (gb + 1e-3 * -2.0)
    expected_w = -0.1 * gw
    torch.testing.assert_close(states[0]["k_bias"].double(), expected_b, rtol=0, atol=2e-6)
    torch.testing.assert_close(states[0]["k_weight"].double(), expected_w, rtol=0, atol=2e-6)


# ---------------------------------------------------------------- schedule hooks


def test_current_and_set_epoch_return_values() -> None:
    loss = GRLoss()
    assert loss.current.as_dict() == {"w": 0.0, "b": -2.0, "mu": 0.5, "sigma": 2.0}
    assert loss.set_epoch(0, 8) == pytest.approx(
        {"w": 0.0, "b": -2.0, "mu": 0.5375, "sigma": 1.8125}
    )
    assert loss.set_epoch(7, 8, linear_init=1) == pytest.approx(
        {"w": 1.7142857142857142, "b": -2.0, "mu": 0.8, "sigma": 0.5}
    )
    assert loss.current.w == pytest.approx(1.7142857142857142)
    learned = GRLoss(k_form="learned", num_classes=3)
    assert learned.set_epoch(0, 8) == pytest.approx({"mu": 0.5375, "sigma": 1.8125})
    with pytest.raises(ValueError, match="linear_init"):
        loss.set_epoch(0, 8, linear_init=8)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"q2": 0.0}, "q2"),
        ({"q2": -0.5}, "q2"),
        ({"q3": 0.0}, "q3"),
        ({"q3": float("inf")}, "q3"),
        ({"alpha": (0.5, 0.0, 0.8, 0.5)}, "sigma0"),
        ({"alpha": (0.5, 2.0, 0.8, -1.0)}, "sigmaT"),
        ({"beta": (0, 2, -2)}, "beta"),
        ({"alpha": (0.5, 2, 0.8, 0.5, 1)}, "alpha"),
        ({"bayes_a": 0.0}, "bayes_a"),
        ({"bayes_a": 1.0}, "bayes_a"),
        ({"bayes_a": 1.5}, "bayes_a"),
        ({"k_form": "logistic"}, "k_form.*sigmoid.*bayes.*learned"),
        ({"schedule": "cosine"}, "schedule.*reference.*linear"),
        ({"learned_lr": 0.0}, "learned_lr"),
        ({"learned_momentum": 1.0}, "learned_momentum"),
        ({"learned_weight_decay": -1e-3}, "learned_weight_decay"),
        ({"num_classes": -2}, "num_classes"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GRLoss(**kwargs)


@pytest.mark.parametrize(
    ("logits", "observed", "match"),
    [
        (torch.zeros(4), torch.zeros(4), "logits must have shape"),
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), "floating"),
        (
            torch.zeros(2, 3),
            torch.zeros(3, 2),
            r"observed must have the same shape as logits \(2, 3\).*\(3, 2\)",
        ),
        (torch.zeros(2, 3), torch.tensor([[1, 0, 2], [0, 1, 0]]), "only 0 .* and 1"),
        (torch.zeros(2, 3), torch.tensor([[1.0, 0.5, 0], [0, 1, 0]]), "only 0 .* and 1"),
        (torch.zeros(0, 3), torch.zeros(0, 3), "non-empty"),
    ],
)
def test_bad_inputs_raise(logits: Tensor, observed: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GRLoss()(logits, observed)


def test_observed_of_any_numeric_dtype() -> None:
    logits, observed = make_batch(30)
    expected = GRLoss()(logits, observed)
    for dtype in (torch.bool, torch.uint8, torch.int64, torch.float16):
        torch.testing.assert_close(GRLoss()(logits, observed.to(dtype)), expected, rtol=0, atol=0)


# ---------------------------------------------------------------- framework and base


def test_framework_blocks() -> None:
    z = torch.linspace(-8, 8, 33, dtype=torch.float64)
    p = torch.sigmoid(z)
    torch.testing.assert_close(neg_log_sigmoid(z), -torch.log(p))
    torch.testing.assert_close(neg_log_one_minus_sigmoid(z), -torch.log(1 - p))
    torch.testing.assert_close(generalized_positive_loss(z, 0.7), (1 - p**0.7) / 0.7)
    torch.testing.assert_close(generalized_negative_loss(z, 1.0), p)  # q3 = 1 is the MAE
    # q → 0 recovers the log losses.
    torch.testing.assert_close(
        generalized_positive_loss(z, 1e-7), -torch.log(p), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        generalized_negative_loss(z, 1e-7), -torch.log(1 - p), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        sigmoid_pseudo_label(p, 2.0, -1.0), 1 / (1 + torch.exp(-(2 * p - 1)))
    )
    torch.testing.assert_close(bayes_pseudo_label(p, 0.25), 0.75 * p / (1 - 0.25 * p))
    torch.testing.assert_close(gaussian_weight(p, 0.3, 0.5), torch.exp(-((p - 0.3) ** 2) / 0.5))
    big = torch.tensor([-1e4, 1e4])
    for fn in (neg_log_sigmoid, neg_log_one_minus_sigmoid):
        assert torch.isfinite(fn(big)).all()
    with pytest.raises(ValueError, match="q"):
        generalized_positive_loss(z, 0.0)
    with pytest.raises(ValueError, match="q"):
        generalized_negative_loss(z, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_weight(p, 0.5, 0.0)
    with pytest.raises(ValueError, match="a must be in"):
        bayes_pseudo_label(p, 1.0)


def test_base_class_defaults_and_registry() -> None:
    with pytest.raises(TypeError):
        SPMLLoss()  # type: ignore[abstract]

    class Constant(SPMLLoss):
        def forward(self, logits: Tensor, observed: Tensor, index: Tensor | None = None) -> Tensor:
            z, _ = self.prepare_inputs(logits, observed)
            return z.sum() * 0

    loss = Constant()
    assert loss.set_epoch(0, 8) == {} and loss.optimizer_groups(1e-5) == []
    assert loss.set_num_classes(3) is None and not loss.trains_on_targets
    assert LOSSES["GR"] is GRLoss
    assert get_loss_class("GR") is GRLoss and get_loss_class("gr") is GRLoss
    with pytest.raises(ValueError, match=r"unknown loss name 'nope'.*'GR'"):
        get_loss_class("nope")
