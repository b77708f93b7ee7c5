"""Write the checkpoints that pin the file format users may have (spml_lightning at 9732e68).

Run once: ``python tests/training/compat/make_checkpoints.py``. Never regenerate them
with later code: their purpose is to be what that code wrote, so that
tests/training/test_compatibility.py proves newer code still tests, predicts and
resumes them. Each is the ``last.ckpt`` of a 1-epoch fit of ``config.yaml`` (a
two-block SimpleConvNet on 16 px images of :func:`write_data`), a few KB:

* ``gr.ckpt``: GR Loss, every option at its default;
* ``role_sqrt_betas_warmup.ckpt``: ROLE (per-sample loss state and its own
  parameter group) with ``lr_scaling: sqrt_betas`` and ``lr_warmup_epochs: 0.5``,
  options later removed (bench/results/ has why), so that loading a checkpoint
  naming them is tested.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

#: The classes of the fixture data: a colour each, drawn as a square where present.
CLASSES = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 220)}

#: checkpoint stem -> the flags of its fit beyond config.yaml.
RUNS: dict[str, list[str]] = {
    "gr": ["--model.loss", "GR"],
    "role_sqrt_betas_warmup": [
        "--model.loss", "ROLE",
        "--model.lr_scaling", "sqrt_betas",
        "--model.lr_batch_size", "4",
        "--model.lr_warmup_epochs", "0.5",
    ],
}  # fmt: skip


def write_data(root: Path, num_train: int = 40, num_test: int = 12, seed: int = 0) -> Path:
    """Write tiny labelled images and their train.csv/test.csv (the CSV data format) to ``root``.

    Deterministic in ``seed``; every image holds one to three coloured squares on grey.
    """
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        rows = ["image,labels"]
        for i in range(count):
            present = [name for name in names if rng.random() < 0.5] or [names[i % len(names)]]
            pixels = np.full((16, 16, 3), 128, dtype=np.uint8)
            for name in present:
                x, y = rng.integers(0, 10, size=2)
                pixels[y : y + 6, x : x + 6] = CLASSES[name]
            path = f"images/{split}{i:03d}.png"
            Image.fromarray(pixels).save(root / path)
            rows.append(f"{path},{';'.join(present)}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def main() -> None:
    """Fit each run for one epoch and copy its last.ckpt here."""
    sys.path.insert(0, str(REPO))
    from spml_lightning.cli import run_cli

    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data")
        for stem, flags in RUNS.items():
            root = Path(tmp) / stem
            run_cli(
                [
                    "fit",
                    "--config", str(HERE / "config.yaml"),
                    "--trainer.default_root_dir", str(root),
                    "--data.init_args.root", str(data),
                    *flags,
                ]
            )  # fmt: skip
            (last,) = root.rglob("last.ckpt")
            shutil.copyfile(last, HERE / f"{stem}.ckpt")


if __name__ == "__main__":
    main()
