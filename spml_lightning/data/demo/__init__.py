"""The offline demo data set: rendering, installing on disk, and its datamodule.

``render.py`` draws the scenes, ``install.py`` writes them once in the
community's formatted layout, ``datamodule.py`` (``DemoDataModule``) reads them
like any benchmark.
"""

from spml_lightning.data.demo.datamodule import DemoDataModule
from spml_lightning.data.demo.install import write_demo_dataset
from spml_lightning.data.demo.render import DEMO_CLASS_NAMES, render_demo_images

__all__ = ["DEMO_CLASS_NAMES", "DemoDataModule", "render_demo_images", "write_demo_dataset"]
