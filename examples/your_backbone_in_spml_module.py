"""SPMLModule with your own backbone, in your own Trainer, with your own callbacks and logger.

SPMLModule takes any ``nn.Module`` that maps images to (B, D) features or a
(B, D, H, W) map (averaged over H and W); it adds the linear head, the SPML loss
(GR Loss by default) with its schedule, and the exact mAP. Everything around it
-- the Trainer, its callbacks, its logger -- is yours.

    python examples/your_backbone_in_spml_module.py            # the demo data, 4 epochs
    python examples/your_backbone_in_spml_module.py --help     # sizes, epochs, data root

The checkpoint records the backbone as its class path and the constructor
arguments it keeps as attributes (``self.width = width`` below), so
``SPMLModule.load_from_checkpoint(path)`` rebuilds it wherever ``MyBackbone`` can
be imported: in your project, put it in a module (``from my_project.models import
MyBackbone``); a class defined in a script, as here, is importable only while
that script runs. The tests run it on a tiny demo set (tests/integration/test_examples.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn

from spml_lightning import DemoDataModule, SPMLModule
from spml_lightning.inference import predicted_labels


class MyBackbone(nn.Module):
    """Two residual-free conv stages and a feature map out: SPMLModule pools it.

    Args:
        width: channels of the first stage (the second has twice as many).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width  # kept under its name: the checkpoint records it
        self.stages = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
        )
        self.num_features = 2 * width  # the feature size SPMLModule's head is built for

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> feature map (B, 2 * width, H / 4, W / 4)."""
        return self.stages(images)


class PrintBestMAP(Callback):
    """Your own callback: say when validation mAP reaches a new best."""

    def __init__(self) -> None:
        self.best = float("-inf")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the epoch's validation mAP when it is the best so far (logged by now)."""
        value = trainer.callback_metrics.get("val/mAP")
        if value is not None and not trainer.sanity_checking and float(value) > self.best:
            self.best = float(value)
            print(f"epoch {trainer.current_epoch}: new best val/mAP {self.best:.2f}")


def main(argv: Sequence[str] | None = None) -> SPMLModule:
    """Train, test the best checkpoint, reload it and label a few images; return the reload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/demo", help="demo data folder (made if missing)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-test", type=int, default=800)
    parser.add_argument("--render-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch")
    parser.add_argument("--output", default="runs/example_backbone", help="logs and checkpoints")
    args = parser.parse_args(argv)

    seed_everything(0)
    data = DemoDataModule(
        root=args.root,
        num_train=args.num_train,
        num_test=args.num_test,
        render_size=args.render_size,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
    )
    model = SPMLModule(
        num_classes=data.num_classes,
        class_names=data.class_names,
        backbone=MyBackbone(width=args.width),
        weights="none",  # the module as given: spml loads nothing into it
        lr=1e-3,
        lr_mult=1.0,
    )
    checkpoint = ModelCheckpoint(monitor="val/mAP", mode="max", filename="best-{epoch:02d}")
    trainer = Trainer(
        max_epochs=args.epochs,
        logger=CSVLogger(args.output, name="my_backbone"),
        callbacks=[checkpoint, LearningRateMonitor(), PrintBestMAP()],
        limit_train_batches=args.limit_batches,
        limit_val_batches=args.limit_batches,
        limit_test_batches=args.limit_batches,
        log_every_n_steps=1,
    )
    trainer.fit(model, data)
    trainer.test(model, data, ckpt_path="best")

    # The checkpoint holds the classes and the preprocessing: predict without the datamodule.
    best = SPMLModule.load_from_checkpoint(checkpoint.best_model_path)
    images = data.test_dataset.image_paths[:3]
    probabilities = best.predict_images(images)
    labels = predicted_labels(probabilities, best.class_names, top_k=2)
    for path, names in zip(images, labels, strict=True):
        print(f"{path}: {', '.join(names)}")
    print(f"logged to {trainer.logger.log_dir}")
    return best


if __name__ == "__main__":
    main()
