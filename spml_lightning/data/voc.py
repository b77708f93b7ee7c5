"""PASCAL VOC 2012 as extracted from ``VOCtrainval_11-May-2012.tar``.

Label matrices exactly as the community builds them (Cole et al., CVPR 2021:
``preproc/format_pascal.py`` of their released code): for each phase (official
``train`` for training, official ``val`` as the test set) and each of the 20
classes in alphabetical order, ``ImageSets/Main/{class}_{phase}.txt`` lists
``<image id> <-1|0|1>``; an image is a row if some class lists it with 1, and
its label is 1 exactly there ("difficult" 0 counts as negative). Rows are
sorted by file name (``<image id>.jpg``). 5,717 train and 5,823 test rows.

The objects' boxes (``observe: size | center``) come from
``Annotations/<image id>.xml``: every object not marked ``difficult`` (those
are not labels either), its area the box's, ``(xmax - xmin) * (ymax - ymin)``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from spml_lightning.data.base import Phase, PhaseData
from spml_lightning.data.download import Archive
from spml_lightning.data.io import image_size
from spml_lightning.data.observation import ObjectBoxes
from spml_lightning.data.official import OfficialDataModule

__all__ = ["VOC_CLASSES", "VOCDataModule", "read_voc_boxes", "read_voc_phase"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

#: Official image-set names of the protocol phases.
_VOC_PHASES: dict[str, str] = {"train": "train", "test": "val"}


def _class_list(data_dir: Path, name: str, phase: str) -> Path:
    return data_dir / "ImageSets" / "Main" / f"{name}_{phase}.txt"


def read_voc_phase(data_dir: Path, image_set: str) -> dict[str, np.ndarray]:
    """Rows and labels of one official image set (``train`` or ``val``).

    Returns:
        ``{"names": file names sorted, "labels": float64 (N, 20)}``.
    """
    positives: dict[str, list[int]] = {}
    for column, name in enumerate(VOC_CLASSES):
        path = _class_list(data_dir, name, image_set)
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ValueError
                value = int(fields[1])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: expected '<image id> <-1|0|1>', found {line!r}."
                ) from None
            if value == 1:
                positives.setdefault(f"{fields[0]}.jpg", []).append(column)
    names = sorted(positives)
    labels = np.zeros((len(names), len(VOC_CLASSES)), dtype=np.float64)
    for row, file_name in enumerate(names):
        labels[row, positives[file_name]] = 1.0
    return {"names": np.asarray(names, dtype=np.str_), "labels": labels}


def _annotation(data_dir: Path, file_name: str) -> Path:
    return data_dir / "Annotations" / f"{Path(file_name).stem}.xml"


def read_voc_boxes(data_dir: Path, names: np.ndarray) -> dict[str, np.ndarray]:
    """The objects of the images ``names`` (``<image id>.jpg``, in row order) from their XMLs.

    Returns:
        ``{"rows", "columns": int64 (K,), "boxes": float64 (K, 4) x, y, w, h,
        "sizes": float64 (N, 2) width, height}``; ``difficult`` objects left out.
    """
    column_of = {name: i for i, name in enumerate(VOC_CLASSES)}
    rows, columns, boxes = [], [], []
    sizes = np.ones((len(names), 2))
    for row, file_name in enumerate(names.tolist()):
        path = _annotation(data_dir, file_name)
        try:
            root = ET.parse(path).getroot()
            size = root.find("size")
            if size is not None:
                sizes[row] = [float(size.findtext(k, "")) for k in ("width", "height")]
            else:  # every box is checked against its image: read the size from the JPEG
                sizes[row] = image_size(str(data_dir / "JPEGImages" / file_name))
            for item in root.iter("object"):
                if item.findtext("difficult", "0").strip() == "1":
                    continue
                name = (item.findtext("name") or "").strip()
                if name not in column_of:
                    raise ValueError(f"object of unknown class {name!r}")
                box = item.find("bndbox")
                if box is None:
                    raise ValueError("object without <bndbox>")
                x0, y0, x1, y1 = (
                    float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax")
                )
                rows.append(row)
                columns.append(column_of[name])
                boxes.append((x0, y0, x1 - x0, y1 - y0))
        except (ET.ParseError, ValueError) as err:
            raise ValueError(
                f"{path}: not a VOC annotation ({err}); observe='size' and 'center' read the "
                "boxes from it. Extract Annotations/ from the VOC archive again."
            ) from None
    return {
        "rows": np.asarray(rows, dtype=np.int64),
        "columns": np.asarray(columns, dtype=np.int64),
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "sizes": sizes,
    }


class VOCDataModule(OfficialDataModule):
    """PASCAL VOC 2012: 20 classes; official train (split into train/val) and val (test).

    ``root`` is the folder the archive was extracted into (the one holding
    ``VOCdevkit/``); the ``VOCdevkit/VOC2012`` folder itself is accepted too.
    Arguments: see ``OfficialDataModule`` and ``SPMLDataModule``.
    """

    archives = (
        Archive(
            # md5 as published with torchvision's VOCSegmentation/VOCDetection
            # ("2012" entry), which serves the same file from this host's mirror.
            url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            md5="6cd6e144f989b92b3379bac3b3de84fd",
            provides=("VOCdevkit/VOC2012/ImageSets/Main", "VOCdevkit/VOC2012/JPEGImages"),
        ),
    )
    has_boxes = True
    #: 2: an XML without <size> gives the JPEG's size (1 x 1 before), boxes are checked by it.
    parser_version = "2"
    title = "PASCAL VOC 2012 (trainval)"
    homepage = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
    layout = """\
  <root>/VOCdevkit/VOC2012/
      ImageSets/Main/{class}_train.txt, {class}_val.txt   (20 classes each)
      JPEGImages/<image id>.jpg
      Annotations/<image id>.xml   (only for observe: size | center)"""

    @property
    def class_names(self) -> list[str]:
        """The 20 PASCAL VOC classes."""
        return list(VOC_CLASSES)

    @property
    def data_dir(self) -> Path:
        """``VOCdevkit/VOC2012`` below the root, or the root itself if it is that folder."""
        nested = self.root / "VOCdevkit" / "VOC2012"
        if not nested.is_dir() and (self.root / "ImageSets" / "Main").is_dir():
            return self.root
        return nested

    def required_files(self) -> list[Path]:
        """Every class's image list of both image sets, and the image folder."""
        files = [
            _class_list(self.data_dir, name, image_set)
            for image_set in _VOC_PHASES.values()
            for name in VOC_CLASSES
        ]
        return files + [self.data_dir / "JPEGImages"]

    def load_phase(self, phase: Phase) -> PhaseData:
        """The image set's images and labels, read from the per-class image lists."""
        self.check_layout()
        image_set = _VOC_PHASES[phase]
        sources = [_class_list(self.data_dir, name, image_set) for name in VOC_CLASSES]
        arrays = self.parsed(
            f"voc2012_{image_set}", sources, lambda: read_voc_phase(self.data_dir, image_set)
        )
        images = self.data_dir / "JPEGImages"
        paths = [str(images / name) for name in arrays["names"].tolist()]
        return PhaseData(paths, arrays["labels"])

    def load_boxes(self, phase: Phase, data: PhaseData) -> ObjectBoxes:
        """The non-difficult objects of the image set's XMLs (``observe``)."""
        names = np.asarray([Path(p).name for p in data.image_paths])
        sources = [_annotation(self.data_dir, name) for name in names.tolist()]
        missing = [str(path) for path in sources if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"observe={self.observe!r} reads the object boxes from Annotations/<image id>.xml"
                f", but {len(missing)} are missing, e.g. {missing[0]}. Extract Annotations/ from "
                f"{self.archives[0].filename} too, or choose observe: uniform or frequency."
            )
        image_set = _VOC_PHASES[phase]
        found = self.parsed(
            f"voc2012_{image_set}_boxes", sources, lambda: read_voc_boxes(self.data_dir, names)
        )
        rows, columns = found["rows"], found["columns"]

        def describe(k: int) -> str:
            return f"{sources[rows[k]]}, {VOC_CLASSES[columns[k]]!r}"

        return ObjectBoxes.from_boxes(rows, columns, found["boxes"], found["sizes"], describe)
