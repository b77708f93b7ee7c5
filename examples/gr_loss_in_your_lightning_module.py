"""GR Loss in your own LightningModule, on one of spml_lightning's datamodules.

Your model, your optimiser, your training loop; from spml_lightning only the loss
(a plain ``nn.Module``), its epoch schedule, the exact mAP and the data. The one
thing GR Loss needs from your module is to be told the epoch: call
``loss.set_epoch(epoch, max_epochs)`` from your own ``on_train_epoch_start``.

    python examples/gr_loss_in_your_lightning_module.py             # the demo data, 4 epochs
    python examples/gr_loss_in_your_lightning_module.py --help      # sizes, epochs, data root

The tests run it on a tiny demo set (tests/integration/test_examples.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch import Tensor
from torchvision.models import resnet18

from spml_lightning import DemoDataModule, GRLoss
from spml_lightning.metrics import mean_average_precision


class MyClassifier(LightningModule):
    """A ResNet-18 from scratch trained with GR Loss: everything but the loss is yours.

    Args:
        num_classes: number of labels.
        lr: Adam learning rate.
    """

    def __init__(self, num_classes: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = resnet18(num_classes=num_classes)
        # The demo config's GR Loss settings; GRLoss() alone has the paper's VOC settings.
        self.loss = GRLoss(beta=(0.0, 2.0, -2.0, -2.0), alpha=(0.5, 2.0, 0.8, 0.5), q2=0.01, q3=1.0)
        self._val_scores: list[Tensor] = []
        self._val_targets: list[Tensor] = []

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> logits (B, C)."""
        return self.net(images)

    def on_train_epoch_start(self) -> None:
        """Move GR Loss's schedule (k̂ and v) to this epoch, and log where it stands."""
        values = self.loss.set_epoch(self.current_epoch, self.trainer.max_epochs)
        self.log_dict({f"gr/{name}": float(value) for name, value in values.items()})

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """GR Loss on the observed single positives (the full labels are never used here)."""
        loss = self.loss(self(batch["image"]), batch["observed"])
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Keep the scores and the full labels of the validation images."""
        self._val_scores.append(torch.sigmoid(self(batch["image"]).float()))
        self._val_targets.append(batch["target"])

    def on_validation_epoch_end(self) -> None:
        """Exact mAP (x 100) over the whole validation set."""
        scores, targets = torch.cat(self._val_scores), torch.cat(self._val_targets)
        self._val_scores, self._val_targets = [], []
        self.log("val/mAP", mean_average_precision(scores, targets) * 100.0, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the network's parameters."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: Sequence[str] | None = None) -> float:
    """Train on the demo data set and return the last validation mAP."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/demo", help="demo data folder (made if missing)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-test", type=int, default=800)
    parser.add_argument("--render-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch")
    parser.add_argument("--output", default="runs/example_gr_loss", help="logs and checkpoints")
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
    model = MyClassifier(num_classes=data.num_classes)
    trainer = Trainer(
        max_epochs=args.epochs,
        default_root_dir=args.output,
        limit_train_batches=args.limit_batches,
        limit_val_batches=args.limit_batches,
        log_every_n_steps=1,
    )
    trainer.fit(model, data)
    val_map = float(trainer.callback_metrics["val/mAP"])
    print(f"validation mAP after {trainer.current_epoch} epochs: {val_map:.2f}")
    return val_map


if __name__ == "__main__":
    main()
