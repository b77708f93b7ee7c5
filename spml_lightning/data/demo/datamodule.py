"""The offline demo data set as a datamodule.

The images are generated deterministically (``render.py``) and written once
in the community's formatted layout (``install.py``), so the demo runs through
exactly the same reading, protocol and transform code as the real benchmarks.
"""

from __future__ import annotations

from spml_lightning.data.demo.install import write_demo_dataset
from spml_lightning.data.demo.render import DEMO_CLASS_NAMES
from spml_lightning.data.formatted import FormattedDataModule

__all__ = ["DemoDataModule"]


class DemoDataModule(FormattedDataModule):
    """Procedurally generated multi-label scenes, made on first use.

    Args:
        root: folder the demo set is written to (and read from).
        num_train: images of the official training phase (split 80/20 into train/val).
        num_test: images of the test phase.
        render_size: side of the generated images in pixels.
        seed: generation seed; the same seed gives byte-identical images.
        image_size: side the images are resized to for the model.
        batch_size: images per batch and per device.
        num_workers: loader worker processes.
        **kwargs (Any): see ``SPMLDataModule``.
    """

    def __init__(
        self,
        root: str = "data/demo",
        num_train: int = 6000,
        num_test: int = 2000,
        render_size: int = 64,
        seed: int = 0,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(
            root=root,
            image_root=None,
            class_names=list(DEMO_CLASS_NAMES),
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            **kwargs,
        )
        self.image_root = self.root / "images"
        self.num_train = num_train
        self.num_test = num_test
        self.render_size = render_size
        self.seed = seed

    def prepare_data(self) -> None:
        """Render the demo images and labels into the root unless they are there."""
        write_demo_dataset(self.root, self.num_train, self.num_test, self.render_size, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Make sure the demo set exists (as prepare_data), then build the datasets."""
        # prepare_data runs on one process per node only; generating here too is
        # cheap when the set exists and keeps setup() usable on its own.
        self.prepare_data()
        super().setup(stage)
