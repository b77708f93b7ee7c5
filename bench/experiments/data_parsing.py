"""How long the raw-format readers take on files of the real size.

    python bench/experiments/data_parsing.py [--images 82783 --annotations 604907]

Writes a synthetic ``instances_train2014.json`` of COCO train2014's size (ids,
categories, polygons, boxes shaped like the real file) and a synthetic CUB
``image_attribute_labels.txt`` (11,788 x 312 lines), then times
``read_coco_instances``, ``read_cub``, and a second COCODataModule read from
the cache. The real files cannot be downloaded on the project's machines;
the synthetic ones have their size and structure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spml_lightning.data.coco import COCO_CLASSES, COCODataModule, read_coco_instances  # noqa: E402
from spml_lightning.data.cub import CUB_ATTRIBUTES, read_cub  # noqa: E402

_COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def write_synthetic_coco(path: Path, num_images: int, num_annotations: int, seed: int = 0) -> Path:
    """A COCO instances json of the given size.

    At train2014's size it is about 330 MB, like the real one.
    """
    rng = np.random.default_rng(seed)
    image_ids = rng.choice(600_000, size=num_images, replace=False) + 1
    # ~1% of the images without annotations, as in train2014.
    annotated = image_ids[: int(num_images * 0.99)]
    owners = rng.choice(annotated, size=num_annotations)
    owners[: len(annotated)] = annotated
    categories = rng.choice(_COCO_IDS, size=num_annotations)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic"}, "licenses": [], "images": [')
        f.write(",".join(
            json.dumps({"license": 1, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": 480,
                        "width": 640, "date_captured": "2013-11-14 16:28:13", "id": int(i)})
            for i in image_ids
        ))  # fmt: skip
        f.write('], "annotations": [')
        for start in range(0, num_annotations, 50_000):
            stop = min(start + 50_000, num_annotations)
            # 26 polygon points per instance: the real file's size (~330 MB) at 604,907 instances.
            polygons = np.round(rng.random((stop - start, 52)) * 600, 2)
            chunk = ",".join(
                json.dumps({"segmentation": [polygons[k - start].tolist()], "area": 1234.5,
                            "iscrowd": 0, "image_id": int(owners[k]),
                            "bbox": [10.5, 20.25, 100.0, 80.75],
                            "category_id": int(categories[k]), "id": k + 1})
                for k in range(start, stop)
            )  # fmt: skip
            f.write(("," if start else "") + chunk)
        f.write('], "categories": ')
        json.dump(
            [
                {"supercategory": "x", "id": i, "name": n}
                for i, n in zip(_COCO_IDS, COCO_CLASSES, strict=True)
            ],
            f,
        )
        f.write("}")
    return path


def write_synthetic_cub(data_dir: Path, num_images: int = 11_788, seed: int = 0) -> Path:
    """images.txt, train_test_split.txt and image_attribute_labels.txt of CUB's size."""
    rng = np.random.default_rng(seed)
    (data_dir / "attributes").mkdir(parents=True, exist_ok=True)
    (data_dir / "images.txt").write_text(
        "".join(f"{i} c/{i}.jpg\n" for i in range(1, num_images + 1))
    )
    (data_dir / "train_test_split.txt").write_text(
        "".join(f"{i} {int(rng.random() < 0.5)}\n" for i in range(1, num_images + 1))
    )
    present = rng.random((num_images, len(CUB_ATTRIBUTES))) < 0.1
    with open(data_dir / "attributes" / "image_attribute_labels.txt", "w") as f:
        for i in range(num_images):
            f.write("".join(
                f"{i + 1} {j + 1} {int(present[i, j])} 3 {12.5 + j % 7:.4f}\n"
                for j in range(len(CUB_ATTRIBUTES))
            ))  # fmt: skip
    return data_dir


def _timed(label: str, function):
    start = time.perf_counter()
    result = function()
    print(f"{label}: {time.perf_counter() - start:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=82_783)
    parser.add_argument("--annotations", type=int, default=604_907)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = _timed(
            "write synthetic COCO json",
            lambda: write_synthetic_coco(
                root / "annotations" / "instances_train2014.json", args.images, args.annotations
            ),
        )
        print(
            f"  {path.stat().st_size / 1e6:.0f} MB, {args.images} images, "
            f"{args.annotations} annotations"
        )
        arrays = _timed(
            "read_coco_instances (json + numpy)", lambda: read_coco_instances(path, "train2014")
        )
        print(f"  {arrays['labels'].shape[0]} rows x {arrays['labels'].shape[1]} classes")
        data = COCODataModule(root=str(root))
        _timed(
            "COCODataModule.class_names, first call (parse + write cache)", lambda: data.class_names
        )
        again = COCODataModule(root=str(root))
        _timed("COCODataModule.class_names, second process (from cache)", lambda: again.class_names)
        cub = _timed(
            "write synthetic CUB attribute file", lambda: write_synthetic_cub(root / "CUB_200_2011")
        )
        arrays = _timed(
            "read_cub (3.7 M attribute lines)", lambda: read_cub(cub, len(CUB_ATTRIBUTES))
        )
        print(f"  {arrays['labels'].shape}")


if __name__ == "__main__":
    main()
