"""Data sets read from the files their authors publish (VOC, COCO, CUB).

``OfficialDataModule`` adds to ``SPMLDataModule`` what every raw-format
reader needs: the opt-in ``download`` of the official archives (in
``prepare_data``, checksums verified), an error naming the expected layout
and how to obtain it when a file is missing, and a cache of the parsed label
matrices next to the data. A per-dataset module only declares its archives,
layout and required files, and parses its phases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from spml_lightning.data.base import SPMLDataModule
from spml_lightning.data.cache import CACHE_FOLDER, cached_arrays
from spml_lightning.data.download import Archive, download_archives

__all__ = ["OfficialDataModule"]


class OfficialDataModule(SPMLDataModule):
    """Base of the data sets read in their official on-disk format.

    Args:
        root: folder the official archives are (or will be) extracted into.
        download: fetch the official archives into ``root``, verify their
            checksums and extract them, when the files are missing (never
            done unless asked). Runs in ``prepare_data``, i.e. once per node.
        mirror: base URL (``https://``, ``file://``) serving the archives under
            their official file names, used instead of the official host; the
            published checksums are still verified.
        cache: keep the parsed label matrices in ``root/.spml_cache``, reused
            while the annotation files keep their size and modification time.
        **kwargs (Any): see ``SPMLDataModule``.
    """

    #: The published archives, in download order.
    archives: ClassVar[tuple[Archive, ...]] = ()
    #: Human name and home page of the data set, for error messages.
    title: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    #: The expected tree below ``root``, shown when something is missing.
    layout: ClassVar[str] = ""
    #: Bumped whenever a reader changes its output, so old cache entries are not reused.
    parser_version: ClassVar[str] = "1"

    def __init__(
        self,
        root: str,
        download: bool = False,
        mirror: str | None = None,
        cache: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.download = download
        self.mirror = mirror
        self.cache = cache

    # -- what a data set declares -------------------------------------------------
    def required_files(self) -> list[Path]:
        """Files (absolute) that must exist before the phases can be read."""
        return []

    # -- shared machinery --------------------------------------------------------
    def prepare_data(self) -> None:
        """With ``download``, fetch and extract the archives when required files are missing."""
        if self.download and self._missing_files():
            download_archives(self.archives, self.root, self.mirror)

    def obtain_hint(self) -> str:
        """How to download the archives (or where to get the data set without them)."""
        if not self.archives:
            return f"get {self.title} from {self.homepage}"
        names = ", ".join(a.filename for a in self.archives)
        return (
            f"pass download=True (--data.download true) to fetch {names}, or "
            f"download {names} from {self.homepage} and extract into {self.root}"
        )

    def _missing_files(self) -> list[Path]:
        return [path for path in self.required_files() if not path.exists()]

    def check_layout(self) -> None:
        """Raise a FileNotFoundError naming what is missing, the layout and how to get it."""
        missing = self._missing_files()
        if not missing:
            return
        where = (
            f"{self.root} does not exist"
            if not self.root.exists()
            else "missing: "
            + ", ".join(str(p) for p in missing[:5])
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
        pending = (
            " download=True is set: call prepare_data() first (the Trainer does)."
            if self.download
            else ""
        )
        raise FileNotFoundError(
            f"{type(self).__name__}: {where}. Expected {self.title} as extracted from its "
            f"official archives:\n{self.layout}\nTo obtain it, {self.obtain_hint()}.{pending}"
        )

    def parsed(
        self,
        name: str,
        sources: Sequence[Path],
        parse: Callable[[], Mapping[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """``parse()``, cached under ``root/.spml_cache/<name>.npz`` when caching is on."""
        cache_file = self.root / CACHE_FOLDER / f"{name}.npz" if self.cache else None
        version = f"{type(self).__name__}/{self.parser_version}"
        return cached_arrays(cache_file, sources, parse, version)
