"""Determinism: seeded runs are bit-identical on CPU.

Single positives never depend on workers, ranks or epochs.
"""

from __future__ import annotations

import numpy as np
import torch

from spml_lightning.cli import run_cli
from spml_lightning.data.sampling import ResumableDataLoader

from probes import demo_args, final_weights


def test_two_seeded_deterministic_fits_are_bit_identical(
    tmp_path, tiny_demo_root, restore_determinism
):
    runs = []
    for name in ("first", "second"):
        args = [
            *demo_args(tmp_path / name, tiny_demo_root),
            "--trainer.max_epochs",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.deterministic",
            "true",
        ]
        cli = run_cli(["fit", *args])
        runs.append(
            (
                final_weights(tmp_path / name / "runs"),
                cli.trainer.callback_metrics["val/mAP"].item(),
            )
        )
    (weights_a, map_a), (weights_b, map_b) = runs
    assert map_a == map_b
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_a.items():
        assert torch.equal(value, weights_b[name]), name
    # Not trivially equal: training moved the weights away from the seeded initialisation.
    assert not torch.equal(weights_a["head.weight"], run_cli(args, run=False).model.head.weight)


def epoch_items(loader, epoch: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """index -> (image, observed) of one epoch."""
    loader.sampler.set_epoch(epoch)
    items = {}
    for batch in loader:
        for index, image, observed in zip(
            batch["index"].tolist(), batch["image"], batch["observed"], strict=True
        ):
            items[index] = (image, observed)
    return items


def test_single_positives_do_not_depend_on_workers_ranks_or_epochs(tiny_demo):
    from spml_lightning.data import DemoDataModule

    tiny_demo.setup("fit")
    matrix = tiny_demo.train_dataset.observed
    assert (matrix.sum(1) == 1).all()  # one observed positive per image

    with_workers = DemoDataModule(
        root=str(tiny_demo.root),
        image_size=32,
        batch_size=16,
        num_workers=2,
        num_train=tiny_demo.num_train,
        num_test=tiny_demo.num_test,
        render_size=tiny_demo.render_size,
    )
    with_workers.setup("fit")
    np.testing.assert_array_equal(with_workers.train_dataset.observed, matrix)

    reference = epoch_items(tiny_demo.train_dataloader(), 0)
    assert sorted(reference) == list(range(len(matrix)))
    for index, (_, observed) in reference.items():
        np.testing.assert_array_equal(observed.numpy(), matrix[index])

    # Two worker processes: the same images (flips included) and labels.
    workers = epoch_items(with_workers.train_dataloader(), 0)
    for index, (image, observed) in reference.items():
        assert torch.equal(workers[index][0], image) and torch.equal(workers[index][1], observed)

    # Two ranks: each image and its labels are what one process sees.
    for rank in (0, 1):
        loader = ResumableDataLoader(
            tiny_demo.train_dataset, batch_size=16, num_replicas=2, rank=rank
        )
        for index, (image, observed) in epoch_items(loader, 0).items():
            assert torch.equal(image, reference[index][0]) and torch.equal(
                observed, reference[index][1]
            )

    # Later epochs: another order and other flips, the same single positives.
    later = epoch_items(tiny_demo.train_dataloader(), 3)
    assert any(not torch.equal(later[i][0], reference[i][0]) for i in reference)
    for index, (_, observed) in later.items():
        assert torch.equal(observed, reference[index][1])
