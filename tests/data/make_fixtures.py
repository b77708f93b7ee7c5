"""Writes the tiny on-disk fixtures of tests/data/<dataset>/ (committed; rerun to regenerate).

    python tests/data/make_fixtures.py

Each fixture is the data set's real on-disk format in miniature, with the
traps of that format built in:

- voc/: "difficult" 0 entries (also on images positive elsewhere), images
  listed with no 1 at all (not rows), class lists in shuffled order with the
  official "%s %2d" spacing, an id whose "<id>.jpg" sorts differently from
  "<id>", and a JPEG listed nowhere.
- voc/Annotations: an XML per image of both phases, one object per positive
  or "difficult" class (a second, smaller one for some), boxes made by
  ``voc_box`` (no random draws: the label files above stay as they were), an
  image with two objects of equal size and distance from the centre.
- coco/: the 80 real categories with their non-contiguous ids, image ids whose
  string order differs from their numeric order, an image (in the json and
  on disk) without annotations, repeated and crowd annotations; ``bbox`` and
  ``area`` from ``coco_box`` (``area`` is not always the box's: COCO's is the
  segmentation's), image 80's boxes tie in size and centre distance.
- cub/: images.txt, train_test_split.txt, all 312 attributes in attributes.txt
  and image_attribute_labels.txt (with a few six-field lines, as the official
  file has), an image without any present attribute.
- nuswide/: the community's formatted arrays (with observed labels, rows
  without positives) and the official lists for the same images (backslash
  paths, the out-of-range value of Labels_lake_Train.txt).
- folder/: PNG images, train.csv (with an observed column), test.csv, classes.txt.

The generator writes the label files from label sets chosen here; it does not
use the package's readers.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

# Names only (the formats' vocabularies); no reading code of the package is used.
from spml_lightning.data.coco import COCO_CLASSES  # noqa: E402
from spml_lightning.data.cub import CUB_ATTRIBUTES  # noqa: E402
from spml_lightning.data.nuswide import NUS_WIDE_CONCEPTS  # noqa: E402
from spml_lightning.data.voc import VOC_CLASSES  # noqa: E402

#: The category ids of instances_*2014.json, in the order of its categories.
COCO_IDS = (
    list(range(1, 12))
    + list(range(13, 26))
    + [27, 28]
    + list(range(31, 45))
    + list(range(46, 66))
    + [67, 70]
    + list(range(72, 83))
    + list(range(84, 91))
)


def write_image(path: Path, rng: np.random.Generator, fmt: str = "JPEG") -> None:
    """A 24x24 image of coloured blocks (a few hundred bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))
    Image.fromarray(pixels).save(path, fmt, **({"quality": 70} if fmt == "JPEG" else {}))


def fresh(folder: str) -> Path:
    root = HERE / folder
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    return root


# --------------------------------------------------------------------------- VOC


#: VOC image sizes (width, height) as in the data set's XMLs.
VOC_SIZE = (500, 375)
#: The fixture image whose objects tie in size and in distance from the centre.
VOC_TIE = "2008_000118"


def voc_box(image: int, k: int, image_id: str) -> tuple[int, int, int, int]:
    """The k-th object's (xmin, ymin, xmax, ymax) on the image-th image: sizes and places vary."""
    if image_id == VOC_TIE:  # mirrored about the centre line (x = 125 and 375), the same size
        return (75, 150, 175, 250) if k % 2 == 0 else (325, 150, 425, 250)
    side = 40 + 60 * ((image + 2 * k) % 4)  # 40, 100, 160 or 220 pixels
    offset = 30 * ((image + k) % 5)  # from the centre, in pixels
    cx, cy = 250 + offset, 187 - offset // 2
    return (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)


def write_voc_annotation(path: Path, image: int, image_id: str, values: dict[str, int]) -> None:
    """The image's XML: an object per class listed 1 or 0 (difficult), in class order.

    The image's first class gets a second, smaller object far from the centre.
    """
    objects = []
    for k, name in enumerate(sorted(values)):
        boxes = [voc_box(image, k, image_id)]
        if k == 0 and image_id != VOC_TIE:
            boxes.append((0, 0, 20, 20))
        for xmin, ymin, xmax, ymax in boxes:
            objects.append(
                f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                f"<difficult>{int(values[name] == 0)}</difficult><bndbox><xmin>{xmin}</xmin>"
                f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
            )
    path.write_text(
        f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename><size>"
        f"<width>{VOC_SIZE[0]}</width><height>{VOC_SIZE[1]}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{''.join(objects)}</annotation>\n"
    )


def make_voc(rng: np.random.Generator) -> None:
    root = fresh("voc")
    devkit = root / "VOCdevkit" / "VOC2012"
    phases = {
        # id -> {class: value}; classes not named are -1. Mostly random, traps explicit.
        "train": [f"2008_{i:06d}" for i in (2, 8, 15, 23, 31, 40, 41, 57, 63, 77, 85, 93, 104, 118)]
        + ["2009_000001-b", "2009_000001"],
        "val": [f"2010_{i:06d}" for i in (3, 5, 11, 22, 36, 48, 52, 67, 70, 81)],
    }
    labels: dict[str, dict[str, dict[str, int]]] = {}
    for phase, ids in phases.items():
        labels[phase] = {}
        for image_id in ids:
            values = {}
            for name in rng.choice(VOC_CLASSES, size=rng.integers(1, 4), replace=False):
                values[str(name)] = 1
            labels[phase][image_id] = values
    # Traps: "difficult" (0) next to positives; images with no 1 anywhere.
    labels["train"]["2008_000015"]["person"] = 0
    labels["train"]["2008_000015"]["dog"] = 1
    labels["train"]["2008_000041"] = {"cat": 0, "chair": 0}  # only difficult: not a row
    labels["train"]["2008_000104"] = {}  # all -1: not a row
    labels["val"]["2010_000036"] = {"sofa": 0}  # not a row
    labels["val"]["2010_000052"]["bottle"] = 0
    main = devkit / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for phase, per_image in labels.items():
        for name in VOC_CLASSES:
            ids = list(per_image)
            rng.shuffle(ids)  # the official lists are sorted; ours are not, on purpose
            lines = [f"{i} {per_image[i].get(name, -1):2d}" for i in ids]
            (main / f"{name}_{phase}.txt").write_text("\n".join(lines) + "\n")
        for image_id in per_image:
            write_image(devkit / "JPEGImages" / f"{image_id}.jpg", rng)
    # After the images: no random draws, so the label files and images stay as they were.
    (devkit / "Annotations").mkdir()
    for per_image in labels.values():
        for image, (image_id, values) in enumerate(per_image.items()):
            if values:
                write_voc_annotation(
                    devkit / "Annotations" / f"{image_id}.xml", image, image_id, values
                )
    write_image(devkit / "JPEGImages" / "2011_999999.jpg", rng)  # listed nowhere


# --------------------------------------------------------------------------- COCO

#: The fixture image whose annotations tie in area and in distance from the centre.
COCO_TIE = 80


def coco_box(number: int, image_id: int, k: int) -> tuple[list[int], float]:
    """``bbox`` and ``area`` of the number-th annotation (k-th of its image); no random draws.

    Every third ``area`` is half the box's, as a segmentation inside its box can be.
    """
    if image_id == COCO_TIE:  # mirrored about the centre, the same size
        return [2 + 12 * (k % 2), 10, 8, 4], 32.0
    w, h = 2 + (number * 7) % 19, 2 + (number * 5) % 13
    x, y = (number * 3) % (25 - w), (number * 11) % (25 - h)
    return [x, y, w, h], float(w * h) / (2 if number % 3 == 0 else 1)


def make_coco(rng: np.random.Generator) -> None:
    root = fresh("coco")
    categories = [
        {"supercategory": "thing", "id": cid, "name": name}
        for cid, name in zip(COCO_IDS, COCO_CLASSES, strict=True)
    ]
    splits = {
        # Numeric order != string order (9 < 10 < 25 < 100, but "10" < "100" < "25" < "9").
        "train2014": [9, 10, 25, 100, 1000, 12, 57870, 391895, 2, 80, 800, 8000, 131, 5],
        "val2014": [42, 4, 400, 139, 74, 7, 1300],
    }
    without_annotations = {"train2014": 3, "val2014": 1}
    (root / "annotations").mkdir()
    for split, ids in splits.items():
        images, annotations = [], []
        for image_id in ids + [without_annotations[split]]:
            file_name = f"COCO_{split}_{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": file_name, "width": 24, "height": 24})
            write_image(root / split / file_name, rng)
        for image_id in ids:
            for k, cid in enumerate(rng.choice(COCO_IDS, size=rng.integers(1, 4))):  # repeats
                crowd = int(rng.random() < 0.15)
                # Crowds carry an RLE dict, the others polygons, as in the official files.
                segmentation = (
                    {"counts": [30, 4, 20, 4, 518], "size": [24, 24]}
                    if crowd
                    else [[1.5, 1.25, 5.0, 1.0, 5.0, 5.75], [10, 10, 12, 10, 12, 12]]
                )
                bbox, area = coco_box(len(annotations) + 1, image_id, k)
                annotations.append({
                    "segmentation": segmentation, "area": area, "iscrowd": crowd,
                    "image_id": image_id, "bbox": bbox, "category_id": int(cid),
                    "id": len(annotations) + 1,
                })  # fmt: skip
        # Annotations are not grouped by image in the official files either.
        annotations = [annotations[i] for i in rng.permutation(len(annotations))]
        document = {
            "info": {"description": "spml_lightning test fixture"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
            "licenses": [],
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))


# --------------------------------------------------------------------------- CUB


def make_cub(rng: np.random.Generator) -> None:
    root = fresh("cub")
    data = root / "CUB_200_2011"
    species = ["001.Black_footed_Albatross", "017.Cardinal", "200.Common_Yellowthroat"]
    names, split = [], []
    for image_id in range(1, 15):
        folder = species[image_id % 3]
        names.append(f"{folder}/{folder.split('.')[1]}_{image_id:04d}_{1000 + 7 * image_id}.jpg")
        split.append(int(image_id not in (2, 5, 9, 12)))
    (data / "attributes").mkdir(parents=True)
    (data / "images.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, 1)))
    (data / "train_test_split.txt").write_text(
        "".join(f"{i} {s}\n" for i, s in enumerate(split, 1))
    )
    (root / "attributes.txt").write_text(
        "".join(f"{i} {n}\n" for i, n in enumerate(CUB_ATTRIBUTES, 1))
    )
    present = (rng.random((len(names), len(CUB_ATTRIBUTES))) < 0.1).astype(int)
    present[6] = 0  # an image without any present attribute stays a row
    lines = []
    for i in range(len(names)):
        for j in range(len(CUB_ATTRIBUTES)):
            line = f"{i + 1} {j + 1} {present[i, j]} {rng.integers(1, 5)} {rng.random() * 30:.4f}"
            if (i, j) in ((3, 7), (10, 250)):
                line += " 0"  # the official file has a few lines with a sixth field
            lines.append(line)
    (data / "attributes" / "image_attribute_labels.txt").write_text("\n".join(lines) + "\n")
    for name in names:
        write_image(data / "images" / name, rng)


# --------------------------------------------------------------------------- NUS-WIDE


def community_observed(labels: np.ndarray) -> np.ndarray:
    """What the community's generate_observed_labels.py writes (uniform, 1 positive)."""
    signed = np.where(labels == 1, 1.0, -1.0)
    observed = np.zeros_like(signed)
    rng = np.random.RandomState(1200)
    for i in range(len(signed)):
        positives = np.nonzero(signed[i] == 1.0)[0]
        rng.shuffle(positives)
        observed[i, positives[:1]] = 1.0
        negatives = np.nonzero(signed[i] == -1.0)[0]
        rng.shuffle(negatives)
    return observed


def make_nuswide(rng: np.random.Generator) -> None:
    root = fresh("nuswide")
    folders = ["actor", "airport", "beach"]
    phases = {"train": ("train", "Train", 15), "test": ("val", "Test", 8)}
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True)
    (root / "ImageList").mkdir()
    for formatted, official, count in phases.values():
        names = [
            f"{folders[i % 3]}/{i + 1:04d}_{2000000 + 97 * i + count}.jpg" for i in range(count)
        ]
        labels = (rng.random((count, len(NUS_WIDE_CONCEPTS))) < 0.04).astype(np.float64)
        labels[[1, 4]] = 0  # rows without any positive (22% in the real arrays)
        labels[2, [13, 55]] = 1
        np.save(root / f"formatted_{formatted}_images.npy", np.array(names))
        np.save(root / f"formatted_{formatted}_labels.npy", labels)
        np.save(root / f"formatted_{formatted}_labels_obs.npy", community_observed(labels))
        (root / "ImageList" / f"{official}Imagelist.txt").write_text(
            "".join(name.replace("/", "\\") + "\r\n" for name in names)
        )
        for column, concept in enumerate(NUS_WIDE_CONCEPTS):
            values = [str(int(v)) for v in labels[:, column]]
            if (concept, official) == ("lake", "Train"):
                values[3] = "-1130179"  # the official file's one out-of-range value
            (labels_dir / f"Labels_{concept}_{official}.txt").write_text("\n".join(values) + "\n")
        for name in names:
            write_image(root / "Flickr" / name, rng)


# --------------------------------------------------------------------------- folder


def make_folder(rng: np.random.Generator) -> None:
    root = fresh("folder")
    classes = ["cat", "dog", "potted plant", "tv"]
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rows = {"train": [], "test": []}
    for phase, count in (("train", 12), ("test", 6)):
        for i in range(count):
            name = f"images/{phase}_{i:02d}.png"
            write_image(root / name, rng, "PNG")
            chosen = [c for c in classes if rng.random() < 0.4] or [classes[i % 4]]
            if i == 3:
                chosen = []  # an image without any label is still a row
            observed = chosen[int(rng.integers(len(chosen)))] if chosen else ""
            rows[phase].append((name, ";".join(chosen), observed))
    (root / "train.csv").write_text(
        "image,labels,observed\n"
        + "".join(f'{n},"{labels}",{o}\n' for n, labels, o in rows["train"])
    )
    (root / "test.csv").write_text(
        "image,labels\n" + "".join(f"{n},{labels}\n" for n, labels, _ in rows["test"])
    )


def main() -> None:
    for seed, make in enumerate((make_voc, make_coco, make_cub, make_nuswide, make_folder)):
        make(np.random.default_rng(seed))
        print(f"wrote {HERE / make.__name__.removeprefix('make_')}")


if __name__ == "__main__":
    main()
