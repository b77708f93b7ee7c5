"""A plain nn.Module loss wrapped with the SPMLLoss hooks: same calls, same state_dict keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spml_lightning import SPMLModule
from spml_lightning.losses import GRLoss, ModuleLoss, as_spml_loss

from probes import tiny_model


class WithIndex(nn.Module):
    trains_on_targets = True

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, logits, observed, index):
        self.seen += len(index)
        return self.scale * nn.functional.binary_cross_entropy_with_logits(logits, observed)


def test_an_spml_loss_is_not_wrapped_and_other_objects_are_refused():
    loss = GRLoss()
    assert as_spml_loss(loss) is loss
    with pytest.raises(TypeError, match="loss\\(logits, observed\\), got function"):
        as_spml_loss(lambda logits, observed: logits.sum())  # type: ignore[arg-type]


def test_a_two_argument_module_is_called_with_two():
    loss = as_spml_loss(nn.BCEWithLogitsLoss(pos_weight=torch.full((3,), 2.0)))
    assert isinstance(loss, ModuleLoss) and loss.config() is None
    assert not loss.trains_on_targets and loss.optimizer_groups(1e-3) == []
    logits, observed = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    expected = nn.functional.binary_cross_entropy_with_logits(
        logits, observed, pos_weight=torch.full((3,), 2.0)
    )
    torch.testing.assert_close(loss(logits, observed, torch.arange(4)), expected)
    assert list(loss.state_dict()) == ["pos_weight"]  # the module's own keys


def test_the_module_s_tensors_are_the_wrapper_s():
    inner = WithIndex()
    loss = as_spml_loss(inner)
    assert loss.trains_on_targets
    loss(torch.zeros(2, 3), torch.ones(2, 3), torch.arange(2))
    assert inner.seen.item() == 2  # called with the index
    assert dict(loss.named_parameters()) == {"scale": inner.scale}
    assert set(loss.state_dict()) == {"scale", "seen"}
    loss.to(torch.float64)
    assert inner.scale.dtype == torch.float64


def test_a_model_with_a_plain_loss_keeps_its_state_dict_keys_and_records_no_loss():
    model = tiny_model(loss=WithIndex())
    assert {"loss.scale", "loss.seen"} <= set(model.state_dict())
    assert "loss" not in model.hparams
    assert isinstance(model, SPMLModule) and isinstance(model.loss, ModuleLoss)
