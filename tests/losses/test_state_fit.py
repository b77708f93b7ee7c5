"""SPMLModule driving per-sample loss state: binding, the APL pass, checkpoints, resume."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback

from spml_lightning import SPMLModule
from spml_lightning.data.io import load_rgb
from spml_lightning.data.transforms import reference_transform
from spml_lightning.losses import (
    AsymmetricPseudoLabelLoss,
    LargeLossPermanentCorrectionLoss,
    OnlineLabelEstimationLoss,
)

from probes import make_trainer, tiny_model


class ScoreSpy(AsymmetricPseudoLabelLoss):
    """Records every scoring pass and what the model outputs on un-augmented images then."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.context: dict = {}  # a plain dict: the model must not become a submodule of its loss

    def update_from_train_scores(self, index, logits):
        model, dataset = self.context["model"], self.context["dataset"]
        transform = reference_transform(32, False)  # the eval transform: no flip
        with torch.no_grad():
            was_training = model.training
            model.eval()
            images = torch.stack([transform(load_rgb(dataset.image_paths[int(i)])) for i in index])
            expected = model(images)
            model.train(was_training)
        self.passes.append((self._epoch, index.clone(), logits.clone(), expected))
        return super().update_from_train_scores(index, logits)


def test_apl_pass_scores_the_whole_train_set_without_augmentation(tmp_path, tiny_demo):
    loss = ScoreSpy(warmup_epochs=1)
    model = tiny_model(loss=loss)
    tiny_demo.setup("fit")
    loss.context.update(model=model, dataset=tiny_demo.train_dataset)
    trainer = make_trainer(tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    # Passes at the start of 0-based epochs 1 and 2 (after 1-based epochs 1 and 2).
    assert [p[0] for p in loss.passes] == [1, 2]
    n = len(tiny_demo.train_dataset)
    for _, index, logits, expected in loss.passes:
        assert sorted(index.tolist()) == list(range(n))
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    quota = sum(loss.per_class_quota())
    assert int((loss.pseudo_labels != -1).sum()) == 2 * quota > 0
    assert trainer.callback_metrics["schedule/apl_total"].item() == 2 * quota


def test_fit_binds_the_train_set_and_hides_loss_buffers_from_ddp(tmp_path, tiny_demo):
    model = tiny_model(loss="LL-Cp")
    assert isinstance(model.loss, LargeLossPermanentCorrectionLoss)
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    n = len(tiny_demo.train_dataset)
    assert model.loss.corrections.shape == (n, 14)
    assert model._ddp_params_and_buffers_to_ignore == ["loss.corrections"]
    # Epoch 2 corrected ceil(16 * 14 * 0.001) = 1 entry in each of its 2 batches.
    assert int(model.loss.corrections.sum()) == 2
    assert not (
        model.loss.corrections & torch.from_numpy(tiny_demo.train_dataset.observed == 1)
    ).any()


class StateAtStart(Callback):
    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.loss.state_dict().items()}


@pytest.mark.parametrize("name", ["ROLE", "LL-Cp", "EM+APL"])
def test_state_survives_checkpoints_resume_and_inference_loading(tmp_path, tiny_demo, name):
    def build():
        loss = AsymmetricPseudoLabelLoss(warmup_epochs=1) if name == "EM+APL" else name
        return tiny_model(loss=loss)

    model = build()
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    path = tmp_path / "state.ckpt"
    trainer.save_checkpoint(path)
    saved = {k: v.clone() for k, v in model.loss.state_dict().items()}
    fresh_state = type(model.loss)(**model.loss.init_args)
    fresh_state.bind_train_set(torch.tensor(tiny_demo.train_dataset.observed))
    assert any(not torch.equal(saved[k], v) for k, v in fresh_state.state_dict().items()), (
        "nothing was learned"
    )

    # Inference: no datamodule, no training set; the state loads along.
    loaded = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    for key, value in saved.items():
        assert torch.equal(loaded.loss.state_dict()[key], value), key
    images = tiny_demo.train_dataset.image_paths[:2]
    assert loaded.predict_images(images).shape == (2, 14)

    # Resume: bound afresh at setup, then overwritten by the checkpoint.
    spy = StateAtStart()
    resumed = build()
    trainer = make_trainer(
        tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=0, callbacks=[spy]
    )
    trainer.fit(resumed, tiny_demo, ckpt_path=path)
    assert trainer.current_epoch == 3
    for key, value in saved.items():
        assert torch.equal(spy.state[key], value), key
    if name == "ROLE":
        optimizer_state = trainer.optimizers[0].state[resumed.loss.label_estimates]
        assert optimizer_state["step"].item() == 3  # Adam resumed where it stopped


def test_optimizer_trains_role_estimates_at_ten_times_the_backbone_rate(tmp_path, tiny_demo):
    model = tiny_model(loss=OnlineLabelEstimationLoss(), lr=1e-3)
    trainer = make_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["label_estimates"]["lr"] == pytest.approx(1e-2)
    assert groups["label_estimates"]["params"] == [model.loss.label_estimates]
