"""AN and the full-label upper bound against a probability-space transcription."""

import pytest
import torch

from spml_lightning.losses import AssumeNegativeLoss, FullLabelLoss, get_loss_class


def transcription(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits.double())
    return (-(labels * torch.log(p) + (1 - labels) * torch.log(1 - p))).mean()


@pytest.mark.parametrize("cls", [AssumeNegativeLoss, FullLabelLoss])
def test_value_and_gradient(cls):
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(6, 5, generator=g) * 12 - 6).double().requires_grad_()
    labels = (torch.rand(6, 5, generator=g) < 0.3).double()
    ours = cls()(z.float(), labels)
    ref = transcription(z, labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    (g_ours,) = torch.autograd.grad(cls()(z, labels), z)
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_extreme_logits_stay_finite(dtype):
    z = torch.tensor([[-100.0, -30.0, 0.0, 30.0, 100.0]] * 2, dtype=dtype, requires_grad=True)
    labels = torch.tensor([[1.0, 0, 1, 0, 1], [0, 1, 0, 1, 0]])
    loss = AssumeNegativeLoss()(z, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(z.grad.float()).all()


def test_only_the_upper_bound_reads_targets():
    assert FullLabelLoss.trains_on_targets and not AssumeNegativeLoss.trains_on_targets
    assert get_loss_class("full") is FullLabelLoss and get_loss_class("AN") is AssumeNegativeLoss
