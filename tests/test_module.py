"""SPMLModule: training, schedule, linear init, exact mAP, checkpoint-carried inference."""

import numpy as np
import pytest
import torch
from PIL import Image

from spml_lightning import GRLoss, SPMLModule
from spml_lightning.metrics import mean_average_precision, operating_point_metrics

from probes import make_trainer, tiny_model


def test_schedule_is_applied_and_logged_each_epoch(tmp_path, tiny_demo):
    model = tiny_model()
    seen = []

    class Spy(GRLoss):
        def set_epoch(self, epoch, max_epochs, linear_init=0):
            seen.append((epoch, max_epochs, linear_init))
            return super().set_epoch(epoch, max_epochs, linear_init)

    model.loss = Spy()
    trainer = make_trainer(tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, tiny_demo)
    assert seen == [(0, 3, 0), (1, 3, 0), (2, 3, 0)]
    # Reference schedule, epoch index 2 of 3 (e = 3): w = 2 * (3 - 1) / 3, mu = 0.5 + 0.3 * 3 / 3.
    assert trainer.callback_metrics["schedule/w"].item() == pytest.approx(4 / 3, abs=1e-6)
    assert trainer.callback_metrics["schedule/mu"].item() == pytest.approx(0.8, abs=1e-6)


def test_linear_init_freezes_the_backbone_only(tmp_path, tiny_demo):
    model = tiny_model(linear_init=1)
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]
    head_before = model.head.weight.detach().clone()
    trainer = make_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    model.hparams.schedule_epochs = 2
    trainer.fit(model, tiny_demo)
    assert all(
        torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True)
    )
    assert not torch.equal(head_before, model.head.weight)
    # The next epoch trains the backbone too.
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    model2 = tiny_model(linear_init=1)
    before = model2.backbone.conv1.weight.detach().clone()
    trainer.fit(model2, tiny_demo)
    assert not torch.equal(before, model2.backbone.conv1.weight)


def test_linear_init_must_leave_training_epochs(tmp_path, tiny_demo):
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="linear_init"):
        trainer.fit(tiny_model(linear_init=2), tiny_demo)


def test_validation_map_is_exact_on_all_rows(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(model, tiny_demo)
    logged = trainer.callback_metrics["val/mAP"].item()
    model.eval()
    dataset = tiny_demo.val_dataset
    with torch.no_grad():
        batch = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        scores = torch.sigmoid(model(batch))
    expected = mean_average_precision(scores, torch.from_numpy(dataset.targets).float()).item()
    assert logged == pytest.approx(expected, abs=1e-4)


def test_test_logs_map_and_per_class_ap(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(tmp_path)
    (results,) = trainer.test(model, tiny_demo)
    ap = model.test_average_precision
    assert ap.shape == (14,)
    assert results["test/mAP"] == pytest.approx(ap.mean().item() * 100, abs=1e-4)
    assert results["test/AP/bird"] == pytest.approx(ap[0].item() * 100, abs=1e-4)


def test_test_and_validate_log_the_f1_metrics_of_all_rows(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(tmp_path)
    (tested,) = trainer.test(model, tiny_demo)
    (validated,) = trainer.validate(model, tiny_demo)
    model.eval()
    for split, results in (("test", tested), ("val", validated)):
        dataset = getattr(tiny_demo, f"{split}_dataset")
        with torch.no_grad():
            batch = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
            scores = torch.sigmoid(model(batch))
        expected = operating_point_metrics(scores, torch.from_numpy(dataset.targets).float())
        assert len(expected) == 12
        for name, value in expected.items():
            assert results[f"{split}/{name}"] == pytest.approx(value.item(), abs=1e-3), name
    assert {"test/OF1", "test/CF1", "test/top3/OP", "test/top3/CR"} <= set(tested)


def test_checkpoint_carries_everything_needed_to_predict(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model, tiny_demo)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.image_size == 32
    assert loaded.class_names == tiny_demo.class_names
    tiny_demo.setup("test")
    image_path = tiny_demo.test_dataset.image_paths[0]
    pil = Image.open(image_path).convert("RGB")
    tensor = torch.from_numpy(np.asarray(pil)).permute(2, 0, 1)  # uint8 (3, H, W)
    probs = loaded.predict_images([pil, tensor, image_path])
    assert probs.shape == (3, 14)
    assert ((probs >= 0) & (probs <= 1)).all()
    torch.testing.assert_close(probs[0], probs[1])
    torch.testing.assert_close(probs[0], probs[2])
    # Same numbers as the trained model through the datamodule's own transform.
    model.eval()
    with torch.no_grad():
        direct = torch.sigmoid(model(tiny_demo.test_dataset[0]["image"][None]))[0]
    torch.testing.assert_close(probs[0], direct, rtol=1e-4, atol=1e-5)


def test_checkpoint_restores_a_non_default_loss(tmp_path, tiny_demo):
    loss = GRLoss(q2=0.5, q3=1.5, k_form="learned")
    model = tiny_model(loss=loss)
    trainer = make_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, tiny_demo)
    path = tmp_path / "learned.ckpt"
    trainer.save_checkpoint(path)
    loaded = SPMLModule.load_from_checkpoint(path, map_location="cpu")
    assert isinstance(loaded.loss, GRLoss)
    assert (loaded.loss.q2, loaded.loss.q3, loaded.loss.k_form) == (0.5, 1.5, "learned")
    for name, value in model.loss.state_dict().items():
        torch.testing.assert_close(loaded.loss.state_dict()[name], value)


def test_predict_step_returns_probabilities(tmp_path, tiny_demo):
    model = tiny_model()
    trainer = make_trainer(tmp_path, limit_predict_batches=2)
    batches = trainer.predict(model, tiny_demo)
    assert len(batches) == 2 and batches[0].shape == (16, 14)
    assert ((batches[0] >= 0) & (batches[0] <= 1)).all()


def test_class_count_mismatch_is_reported(tmp_path, tiny_demo):
    trainer = make_trainer(tmp_path, limit_train_batches=1)
    with pytest.raises(ValueError, match="14 classes"):
        trainer.fit(tiny_model(num_classes=5), tiny_demo)


def test_predict_images_without_image_size_explains(tmp_path):
    with pytest.raises(RuntimeError, match="image_size"):
        tiny_model().predict_images([Image.new("RGB", (8, 8))])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"lr": 0.0}, "lr"),
        ({"linear_init": -1}, "linear_init"),
        ({"backbone": "alexnet9"}, "Unknown backbone"),
        ({"loss": "NotALoss"}, "unknown loss name"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_model(**kwargs)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    a = tiny_model().eval()
    b = tiny_model(channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_only_a_loss_that_declares_it_sees_the_full_labels(tmp_path, tiny_demo):
    from spml_lightning.losses import AssumeNegativeLoss, FullLabelLoss

    seen = {}

    def spy(cls):
        class Spy(cls):
            def forward(self, logits, observed, index=None):
                seen[cls.__name__] = observed.sum(1)
                return super().forward(logits, observed, index)

        return Spy()

    for cls in (AssumeNegativeLoss, FullLabelLoss):
        trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
        trainer.fit(tiny_model(loss=spy(cls)), tiny_demo)
    assert (seen["AssumeNegativeLoss"] == 1).all()  # one observed positive per image
    assert (seen["FullLabelLoss"] >= 1).all() and (seen["FullLabelLoss"] > 1).any()
