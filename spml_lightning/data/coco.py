"""MS-COCO 2014 as extracted from the official zip files.

Label matrices exactly as the community builds them (Cole et al., CVPR 2021:
``preproc/format_coco.py`` of their released code): columns follow the order
of ``categories`` in ``instances_train2014.json`` (ids are not contiguous:
1..90 with gaps); rows are the images with at least one instance annotation
(crowd ones included), ordered by their image ids sorted AS STRINGS
("100" < "25" < "9"); images without annotations are not rows. Official
train2014 is split into train/val, val2014 is the test set: 82,081 and 40,137
rows.

The json is parsed with the standard library and numpy, and the result is
cached next to the data. Polygon segmentations (tens of millions of numbers,
most of the file and of json's parse time, and irrelevant to image labels) are
cut out of the raw bytes before parsing: the full train2014 file then parses
in seconds and a fraction of the memory.

The objects' boxes (``observe: size | center``) are read through the
pycocotools COCO API from the same document: every annotation, crowds included
(they make labels too), with its ``area`` (the segmentation's) and ``bbox``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from spml_lightning.data.base import Phase, PhaseData
from spml_lightning.data.download import Archive
from spml_lightning.data.observation import ObjectBoxes
from spml_lightning.data.official import OfficialDataModule

__all__ = ["COCO_CLASSES", "COCODataModule", "read_coco_boxes", "read_coco_instances"]

#: The 80 categories of instances_{train,val}2014.json, in the order of the json.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

_COCO_PHASES: dict[str, str] = {"train": "train2014", "test": "val2014"}

# A "segmentation" key whose value is an array of numbers / arrays of numbers
# (polygons; RLE dicts are left alone). A JSON string cannot contain this match
# (its quotes would be escaped), so replacing it by [] keeps the document valid
# and changes nothing else.
_POLYGONS = re.compile(rb'"segmentation"\s*:\s*\[[-+0-9.eE,\s\[\]]*\]')


def _load_instances_json(path: Path) -> dict:
    return json.loads(_POLYGONS.sub(b'"segmentation": []', path.read_bytes()))


def read_coco_instances(path: Path, split: str) -> dict[str, np.ndarray]:
    """Rows, labels and categories of one ``instances_<split>.json``.

    Returns:
        ``{"names": image paths relative to the root (``<split>/COCO_<split>_<id:012d>.jpg``),
        "image_ids": int64, "labels": float64 (N, C), "category_names", "category_ids"}``.
    """
    try:
        data = _load_instances_json(path)
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); download it again.") from None
    try:
        categories = data["categories"]
        annotations = data["annotations"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{path} is not a COCO instances file (no 'categories'/'annotations')."
        ) from None
    category_ids = np.fromiter((c["id"] for c in categories), dtype=np.int64, count=len(categories))
    category_names = np.asarray([c["name"] for c in categories], dtype=np.str_)
    image_of = np.fromiter(
        (a["image_id"] for a in annotations), dtype=np.int64, count=len(annotations)
    )
    category_of = np.fromiter(
        (a["category_id"] for a in annotations), dtype=np.int64, count=len(annotations)
    )
    del data, annotations  # the json tree is most of the memory: free it before the matrix

    # Column of each annotation: a lookup table over the (small, non-contiguous) id range.
    if len(np.unique(category_ids)) != len(category_ids):
        raise ValueError(f"{path} lists a category id twice.")
    table = np.full(max(int(category_ids.max(initial=0)), int(category_of.max(initial=0))) + 1, -1)
    table[category_ids] = np.arange(len(category_ids))
    columns = table[category_of] if len(category_of) else category_of
    if (columns < 0).any():
        unknown = sorted(set(category_of[columns < 0].tolist()))[:5]
        raise ValueError(
            f"{path}: annotations use category ids {unknown} missing from 'categories'."
        )

    # Rows: annotated images, ordered by their ids as strings (the community's order).
    unique_ids = np.unique(image_of)  # numerically sorted
    order = np.argsort(unique_ids.astype(np.str_), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    rows = rank[np.searchsorted(unique_ids, image_of)]
    labels = np.zeros((len(unique_ids), len(category_ids)), dtype=np.float64)
    labels[rows, columns] = 1.0
    image_ids = unique_ids[order]
    names = np.asarray(
        [f"{split}/COCO_{split}_{i:012d}.jpg" for i in image_ids.tolist()], dtype=np.str_
    )
    return {
        "names": names,
        "image_ids": image_ids,
        "labels": labels,
        "category_names": category_names,
        "category_ids": category_ids,
    }


def read_coco_boxes(path: Path) -> dict[str, np.ndarray]:
    """Every annotation's image, category, ``bbox`` and ``area``, and every image's size.

    Read with the pycocotools COCO API from the document without its polygons
    (which it does not need here).

    Returns:
        ``{"image_ids", "category_ids": int64 (K,), "bbox": float64 (K, 4) x, y, w, h,
        "area": float64 (K,), "size_image_ids": int64 (M,), "sizes": float64 (M, 2)
        width, height}``.
    """
    coco = COCO()
    coco.dataset = _load_instances_json(path)
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints its progress
        coco.createIndex()
    annotations = coco.loadAnns(coco.getAnnIds())
    images = coco.loadImgs(coco.getImgIds())
    try:
        return {
            "image_ids": np.asarray([a["image_id"] for a in annotations], dtype=np.int64),
            "category_ids": np.asarray([a["category_id"] for a in annotations], dtype=np.int64),
            "bbox": np.asarray([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4),
            "area": np.asarray([a["area"] for a in annotations], dtype=np.float64),
            "size_image_ids": np.asarray([i["id"] for i in images], dtype=np.int64),
            "sizes": np.asarray(
                [(i["width"], i["height"]) for i in images], dtype=np.float64
            ).reshape(-1, 2),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: an annotation without a valid 'bbox'/'area' or an image without "
            f"'width'/'height' ({type(err).__name__}: {err}); observe='size' and 'center' need "
            "them."
        ) from None


def _positions(values: np.ndarray, wanted: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Index in ``values`` (unique, any order) of every element of ``wanted``, all present."""
    order = np.argsort(values, kind="stable")
    at = order[np.searchsorted(values, wanted, sorter=order).clip(0, len(values) - 1)]
    if len(wanted) and (len(values) == 0 or not (values[at] == wanted).all()):
        raise ValueError(f"{path}: {what}; observe='size' and 'center' need it.")
    return at


class COCODataModule(OfficialDataModule):
    """MS-COCO 2014: 80 classes; train2014 (split into train/val) and val2014 (test).

    ``root`` holds ``annotations/``, ``train2014/`` and ``val2014/`` as the three
    official zip files extract. The class names are the json's categories
    (the built-in ``COCO_CLASSES`` until the annotations are on disk); asking
    for them parses the train json once (seconds; cached afterwards).
    Arguments: see ``OfficialDataModule`` and ``SPMLDataModule``.
    """

    # COCO publishes no checksums: these MD5s are the ETags (the MD5 of a
    # single-part upload) that images.cocodataset.org serves for these files,
    # the same values GluonCV, PaddleNLP and LAVIS verify against.
    archives = (
        Archive(
            url="http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
            md5="0a379cfc70b0e71301e0f377548639bd",
            provides=("annotations/instances_train2014.json", "annotations/instances_val2014.json"),
        ),
        Archive(
            url="http://images.cocodataset.org/zips/train2014.zip",
            md5="0da8c0bd3d6becc4dcb32757491aca88",
            provides=("train2014",),
        ),
        Archive(
            url="http://images.cocodataset.org/zips/val2014.zip",
            md5="a3d79f5ed8d289b7a7554ce06a5782b3",
            provides=("val2014",),
        ),
    )
    has_boxes = True
    title = "MS-COCO 2014 (train2014, val2014, instance annotations)"
    homepage = "https://cocodataset.org/#download"
    layout = """\
  <root>/annotations/instances_train2014.json, instances_val2014.json
  <root>/train2014/COCO_train2014_<id:012d>.jpg
  <root>/val2014/COCO_val2014_<id:012d>.jpg"""

    def _annotation_file(self, split: str) -> Path:
        return self.root / "annotations" / f"instances_{split}.json"

    def required_files(self) -> list[Path]:
        """The instances annotation file and the image folder of both splits."""
        return [self._annotation_file(s) for s in _COCO_PHASES.values()] + [
            self.root / s for s in _COCO_PHASES.values()
        ]

    def _instances(self, split: str) -> dict[str, np.ndarray]:
        path = self._annotation_file(split)
        return self.parsed(f"coco_{split}", [path], lambda: read_coco_instances(path, split))

    @cached_property
    def class_names(self) -> list[str]:
        """The train annotations' category names, or the 80 COCO names without them."""
        train_split = _COCO_PHASES["train"]
        if self._annotation_file(train_split).is_file():
            return self._instances(train_split)["category_names"].tolist()
        return list(COCO_CLASSES)

    def load_phase(self, phase: Phase) -> PhaseData:
        """The split's images and labels; its categories must be those of train2014."""
        self.check_layout()
        split = _COCO_PHASES[phase]
        arrays = self._instances(split)
        train = self._instances(_COCO_PHASES["train"])
        if arrays["category_ids"].tolist() != train["category_ids"].tolist() or (
            arrays["category_names"].tolist() != train["category_names"].tolist()
        ):
            raise ValueError(
                f"{self._annotation_file(split)} lists other categories (or another order) than "
                f"{self._annotation_file(_COCO_PHASES['train'])}: the label columns would not "
                "match."
            )
        return PhaseData([str(self.root / n) for n in arrays["names"].tolist()], arrays["labels"])

    def load_boxes(self, phase: Phase, data: PhaseData) -> ObjectBoxes:
        """Every annotation of the split as an object of its image's row (``observe``)."""
        self.check_layout()
        split = _COCO_PHASES[phase]
        path = self._annotation_file(split)
        arrays = self._instances(split)
        found = self.parsed(f"coco_{split}_boxes", [path], lambda: read_coco_boxes(path))
        sized = _positions(
            found["size_image_ids"], arrays["image_ids"], path, "an annotated image is not listed"
        )
        rows = _positions(arrays["image_ids"], found["image_ids"], path, "unknown image")
        columns = _positions(
            arrays["category_ids"], found["category_ids"], path, "unknown category"
        )
        names = arrays["category_names"]

        def describe(k: int) -> str:
            return (
                f"{path}, an annotation of image id {found['image_ids'][k]} "
                f"({arrays['names'][rows[k]]}), {str(names[columns[k]])!r}"
            )

        return ObjectBoxes(
            rows=rows,
            columns=columns,
            boxes=found["bbox"],
            areas=found["area"],
            image_sizes=found["sizes"][sized],
            describe=describe,
        )
