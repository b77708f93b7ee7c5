"""Observation strategies (observation.py) and SPMLDataModule(observe=...) on the fixtures.

The expected classes of the COCO and VOC fixtures were worked out by hand from
the boxes make_fixtures.py writes (coco_box, voc_box); the comments show the
sums for the rows where the strategies disagree.
"""

import json
import shutil

import numpy as np
import pytest

from spml_lightning.data import (
    COCODataModule,
    CSVDataModule,
    CUBDataModule,
    NUSWIDEDataModule,
    VOCDataModule,
)
from spml_lightning.data.observation import ObjectBoxes, observe_by_boxes, observe_by_frequency

from community_reference import FIXTURES, copy_fixture

# -- the strategies on hand-made matrices ----------------------------------------------------------

#: Row 0: classes 0, 1, 2; row 1: 1 and 3; row 2: 0 and 2 (and a box of 3, not a label);
#: row 3: no positive.
LABELS = np.array([[1, 1, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]])
#: (row, column, x, y, w, h) in 100 x 100 images.
OBJECTS = [
    (0, 0, 45, 45, 10, 10),  # centred, area 100
    (0, 1, 0, 0, 30, 30),  # largest (900), far from the centre
    (0, 1, 90, 90, 5, 5),  # a second, small one of class 1 does not make class 1 small
    (0, 2, 30, 30, 20, 20),  # area 400, centre (40, 40): second most central
    (1, 1, 0, 0, 20, 20),  # class 1 and 3: the same area, centres (10, 10) and (90, 90)
    (1, 3, 80, 80, 20, 20),
    (2, 0, 0, 0, 10, 10),
    (2, 2, 70, 0, 20, 20),
    (2, 3, 0, 0, 100, 100),  # largest and most central, but class 3 is no label of row 2
]


def boxes(objects=OBJECTS) -> ObjectBoxes:
    table = np.array(objects, dtype=np.float64)
    return ObjectBoxes(
        rows=table[:, 0].astype(int),
        columns=table[:, 1].astype(int),
        boxes=table[:, 2:],
        areas=table[:, 4] * table[:, 5],
        image_sizes=np.full((len(LABELS), 2), 100.0),
    )


def positives(observed: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row == 1).tolist() for row in observed]


def test_size_observes_the_largest_object_ties_by_the_lower_class():
    observed = observe_by_boxes(LABELS, boxes(), "size")
    # Row 1: areas 400 and 400, class 1 before class 3. Row 2: 400 > 100; class 3 is no label.
    assert positives(observed) == [[1], [1], [2], []]
    assert set(np.unique(observed)) == {0.0, 1.0}
    assert positives(observe_by_boxes(LABELS, boxes(), "size", num_pos=2)) == [
        [1, 2],
        [1, 3],
        [0, 2],
        [],
    ]
    assert positives(observe_by_boxes(LABELS, boxes(), "size", num_pos=-1)) == [
        [0, 1, 2],
        [1, 3],
        [0, 2],
        [],
    ]


def test_center_observes_the_most_central_object():
    observed = observe_by_boxes(LABELS, boxes(), "center")
    # Row 0: centres (50, 50) -> 0, (40, 40) -> 0.02, (15, 15) -> 0.245. Row 1: (10, 10) and
    # (90, 90) both 0.32 -> class 1. Row 2: (5, 5) 0.405, (80, 10) 0.25 -> class 2.
    assert positives(observed) == [[0], [1], [2], []]
    assert positives(observe_by_boxes(LABELS, boxes(), "center", num_pos=2))[0] == [0, 2]
    # Normalised by the image size: in a 400 x 100 image (centre (200, 50)), class 0 centred at
    # (200, 90) is 40 px away, (0, 0.4) -> 0.16 normalised; class 2 at (260, 50) is 60 px away,
    # (0.15, 0) -> 0.0225: the nearer one once normalised.
    wide = [(0, 0, 195, 85, 10, 10), (0, 2, 250, 40, 20, 20)]
    table = boxes(wide)
    table = ObjectBoxes(
        table.rows, table.columns, table.boxes, table.areas, np.array([[400.0, 100.0]] * 4)
    )
    assert positives(observe_by_boxes(LABELS[:1], table, "center")) == [[2]]


def test_box_strategies_draw_nothing_for_positives_and_the_seed_draws_negatives():
    a = observe_by_boxes(LABELS, boxes(), "size", seed=1, num_neg=1)
    b = observe_by_boxes(LABELS, boxes(), "size", seed=2, num_neg=1)
    assert positives(a) == positives(b) == [[1], [1], [2], []]
    assert (a == -1).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert ((a == -1) <= (LABELS == 0)).all()  # negatives only where the label is 0
    seeds = [observe_by_boxes(LABELS, boxes(), "size", seed=s, num_neg=1) for s in range(20)]
    assert len({s.tobytes() for s in seeds}) > 1  # the seed picks the negatives


def test_a_positive_image_without_boxes_is_refused():
    without_row_2 = [o for o in OBJECTS if o[0] != 2 or o[1] == 3]
    with pytest.raises(ValueError, match=r"1 images have positive labels but no box .*\[2\]"):
        observe_by_boxes(LABELS, boxes(without_row_2), "size")


def test_frequency_draws_in_proportion_to_the_class_frequency():
    # Classes 0 and 1 together in 1000 rows, class 0 alone in 3000 more: frequencies 4000 and
    # 1000, so a two-positive row observes class 0 with probability 0.8.
    labels = np.array([[1, 1]] * 1000 + [[1, 0]] * 3000)
    observed = observe_by_frequency(labels, seed=0)
    assert (observed.sum(axis=1) == 1).all() and (observed[1000:, 0] == 1).all()
    share = observed[:1000, 0].mean()
    assert 0.76 < share < 0.84  # 0.8 +- 3 binomial standard deviations (0.013)
    # Uniform draws would give 0.5: the strategy is not the protocol's.
    assert observe_by_frequency(labels, seed=0).tobytes() == observed.tobytes()
    assert observe_by_frequency(labels, seed=1).tobytes() != observed.tobytes()


def test_frequency_counts_and_negatives():
    assert positives(observe_by_frequency(LABELS, num_pos=-1)) == [[0, 1, 2], [1, 3], [0, 2], []]
    two = observe_by_frequency(LABELS, num_pos=2, num_neg=-1)
    assert (two == 1).sum(axis=1).tolist() == [2, 2, 2, 0]
    assert ((two == -1) == (LABELS == 0)).all()  # -1: every negative
    # A row's only positive is always the one observed.
    assert positives(observe_by_frequency(LABELS[[3, 1]][:, [0, 3]], seed=5)) == [[], [1]]


# -- the datamodule option ------------------------------------------------------------------------


def observed_classes(data) -> dict[str, list[str]]:
    """Image file name -> observed positive classes, over the train and val rows."""
    data.setup("fit")
    found = {}
    for dataset in (data.train_dataset, data.val_dataset):
        for path, row in zip(dataset.image_paths, dataset.observed, strict=True):
            found[path.rsplit("/", 1)[1]] = [data.class_names[c] for c in np.flatnonzero(row == 1)]
    return found


def coco(root, **kwargs) -> COCODataModule:
    return COCODataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def voc(root, **kwargs) -> VOCDataModule:
    return VOCDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def first(found: dict[str, list[str]]) -> dict[str, str]:
    return {name: classes[0] for name, classes in found.items()}


#: COCO train2014 image id -> the class size and center observe (areas and bboxes: coco_box).
COCO_EXPECTED = {
    # horse area 99 bbox centre (17.5, 16.5); train 8, (11, 14); tennis racket 192, (14, 15).
    # Distances^2 in the 24 x 24 image: 0.0877, 0.0087, 0.0226.
    10: ("tennis racket", "train"),
    100: ("toothbrush", "toothbrush"),
    1000: ("cake", "cake"),
    12: ("hair drier", "hair drier"),
    # boat area 26, centre (12.5, 11); frisbee area 70 (half its 20 x 7 box), centre (11, 12.5):
    # the same distance, boat has the lower class index.
    131: ("frisbee", "boat"),
    2: ("toaster", "toaster"),
    # book 143, (15.5, 12.5); bear 18, (21, 12); orange 252, (10, 7).
    25: ("orange", "book"),
    391895: ("pizza", "pizza"),
    # hot dog 60, (14.5, 6); wine glass 96, (20, 15).
    5: ("wine glass", "hot dog"),
    57870: ("sink", "sink"),
    # dog (a crowd) and sink: both 32, centres (18, 12) and (6, 12): tied, dog is class 16.
    80: ("dog", "dog"),
    # skateboard area 24 (half its 16 x 3 box), centre (8, 12.5); bench 32, (5, 8);
    # keyboard 99, (16.5, 15.5).
    800: ("keyboard", "skateboard"),
    # snowboard 60, (21, 10); spoon 45, (11, 6.5); bird (a crowd) 143, (18.5, 7.5).
    8000: ("bird", "spoon"),
    9: ("spoon", "spoon"),
}


@pytest.mark.parametrize("strategy", ["size", "center"])
def test_coco_size_and_center(tmp_path, strategy):
    data = coco(copy_fixture("coco", tmp_path), observe=strategy)
    found = first(observed_classes(data))
    column = 0 if strategy == "size" else 1
    assert found == {
        f"COCO_train2014_{i:012d}.jpg": classes[column] for i, classes in COCO_EXPECTED.items()
    }
    assert data.observed_by == strategy


def test_coco_size_uses_the_annotation_area_not_the_box():
    # Image 800 by area: keyboard 99, bench 32, skateboard 24; by box, skateboard (48) > bench.
    data = coco(FIXTURES / "coco", cache=False, observe="size", num_pos=2)
    assert sorted(observed_classes(data)["COCO_train2014_000000000800.jpg"]) == [
        "bench",
        "keyboard",
    ]


#: VOC train image -> the class size and center observe (boxes: voc_box in 500 x 375 images).
VOC_EXPECTED = {
    # bus 40 px at (250, 187) (and 20 px in the corner); cow 160 px at (280, 172); dog 40 px.
    "2008_000002": ("cow", "bus"),
    "2008_000008": ("aeroplane", "aeroplane"),
    # dog and sheep both 160 px; dog at (310, 157) is the nearer (person: difficult, no label).
    "2008_000015": ("dog", "dog"),
    "2008_000023": ("diningtable", "diningtable"),
    "2008_000031": ("horse", "horse"),
    "2008_000040": ("sheep", "sheep"),
    "2008_000057": ("boat", "boat"),
    "2008_000063": ("diningtable", "diningtable"),
    "2008_000077": ("bus", "bus"),
    "2008_000085": ("chair", "chair"),
    "2008_000093": ("bird", "bird"),
    # bus and horse: 100 px boxes centred at x = 125 and 375, y = 200: tied, bus is class 5.
    "2008_000118": ("bus", "bus"),
    # car 160 px at (370, 127), chair 40 px at (250, 187) (the centre), tvmonitor 160 px at
    # (280, 172): the largest tie between car and tvmonitor, car has the lower index.
    "2009_000001-b": ("car", "chair"),
    "2009_000001": ("motorbike", "motorbike"),
}


@pytest.mark.parametrize("strategy", ["size", "center"])
def test_voc_size_and_center(tmp_path, strategy):
    found = first(observed_classes(voc(copy_fixture("voc", tmp_path), observe=strategy)))
    column = 0 if strategy == "size" else 1
    assert found == {f"{i}.jpg": classes[column] for i, classes in VOC_EXPECTED.items()}


def test_voc_without_annotations_names_what_is_missing(tmp_path):
    root = copy_fixture("voc", tmp_path)
    shutil.rmtree(root / "VOCdevkit" / "VOC2012" / "Annotations")
    with pytest.raises(FileNotFoundError, match=r"Annotations/<image id>.xml.*14 are missing"):
        voc(root, observe="size").setup("fit")
    voc(root, observe="frequency").setup("fit")  # the other strategies do not need them


def test_frequency_is_deterministic_per_seed_and_changes_with_it():
    draws = [
        observed_classes(voc(FIXTURES / "voc", cache=False, observe="frequency", observe_seed=s))
        for s in (3, 3, 4)
    ]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    uniform = observed_classes(voc(FIXTURES / "voc", cache=False, observe_seed=3))
    assert draws[0] != uniform
    # Single-positive rows observe their positive whatever the strategy.
    assert draws[0]["2008_000008.jpg"] == draws[2]["2008_000008.jpg"] == ["aeroplane"]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="observe must be one of uniform, frequency, size"):
        voc(FIXTURES / "voc", observe="largest")


def test_data_sets_without_boxes_name_the_strategies_they_support():
    with pytest.raises(
        ValueError, match="CUBDataModule does not have. It supports observe: uniform, frequency."
    ):
        CUBDataModule(root=str(FIXTURES / "cub"), num_workers=0, observe="size", cache=False).setup(
            "fit"
        )
    nuswide = NUSWIDEDataModule(root=str(FIXTURES / "nuswide"), num_workers=0, observe="center")
    with pytest.raises(ValueError, match="supports observe: uniform, frequency, given"):
        nuswide.setup("fit")


def test_given_uses_the_data_s_observed_labels_and_refuses_data_without():
    folder = CSVDataModule(
        root=str(FIXTURES / "folder"), class_names="classes.txt", num_workers=0, observe="given"
    )
    given = observed_classes(folder)
    assert folder.observed_by == "given"
    assert given == observed_classes(
        CSVDataModule(root=str(FIXTURES / "folder"), class_names="classes.txt", num_workers=0)
    )  # uniform uses the given labels too (the protocol's rule)
    with pytest.raises(ValueError, match="observe='given' but the train phase of VOCDataModule"):
        voc(FIXTURES / "voc", cache=False, observe="given").setup("fit")


def test_a_strategy_replaces_given_observed_labels_with_a_warning():
    data = CSVDataModule(
        root=str(FIXTURES / "folder"), class_names="classes.txt", num_workers=0,
        observe="frequency", num_pos=-1,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="observed labels that come with the train phase"):
        found = observed_classes(data)
    # num_pos=-1: every positive, whatever the given column said (train_05: tv only).
    assert found["train_05.png"] == ["cat", "potted plant", "tv"]
    assert found["train_11.png"] == ["cat", "dog", "potted plant"]
    assert data.observed_by == "frequency"


# -- the CSV boxes column ---------------------------------------------------------------------


def box_csv(tmp_path, rows: list[tuple[str, str]]) -> CSVDataModule:
    """A folder data set of 40 x 20 PNGs with the given (labels, boxes) cells."""
    from PIL import Image

    (tmp_path / "images").mkdir(parents=True)
    lines = ["image,labels,boxes"]
    for i, (labels, cell) in enumerate(rows):
        Image.new("RGB", (40, 20)).save(tmp_path / "images" / f"{i}.png")
        lines.append(f'images/{i}.png,{labels},"{cell}"')
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    return CSVDataModule(
        root=str(tmp_path), test_csv=None, class_names=["cat", "dog", "tv"], num_workers=0,
        val_fraction=0.25,
    )  # fmt: skip


ROWS = [
    # dog 10 x 10 centred in the 40 x 20 image; cat 30 x 4, larger (120 > 100), centre (15, 2).
    ("cat;dog", "cat:0 0 30 4;dog:15,5,10,10"),
    # tv 8 x 8 centred at (4, 10): 16 px from the centre (20, 10), (-0.4, 0) -> 0.16 normalised;
    # dog 2 x 2 at (20, 1): 9 px, (0, -0.45) -> 0.2025. Normalised, the tv is the nearer.
    ("dog;tv", "tv:0 6 8 8;dog:19 0 2 2"),
    ("cat", "cat:1 1 2 2"),
    ("", ""),  # no label, no box
]


def test_csv_boxes_column(tmp_path):
    found = {}
    for strategy in ("size", "center"):
        data = box_csv(tmp_path / strategy, ROWS)
        data.observe = strategy
        found[strategy] = observed_classes(data)
    assert found["size"] == {"0.png": ["cat"], "1.png": ["tv"], "2.png": ["cat"], "3.png": []}
    assert found["center"] == {"0.png": ["dog"], "1.png": ["tv"], "2.png": ["cat"], "3.png": []}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("cat;dog", "cat:0 0 20")], r"line 2: box 'cat:0 0 20' is not '<label>:<x> <y> <w> <h>'"),
        ([("cat", "cat:0 0 0 4")], "positive width and height"),
        ([("cat", "dog:0 0 2 2")], "line 2: a box of 'dog', which is not among the row's labels"),
        ([("cat", "cta:0 0 2 2")], r"unknown class 'cta' \(did you mean 'cat'\?\)"),
        ([("cat", "")], "line 2: labels 'cat' but an empty 'boxes' cell"),
    ],
)
def test_csv_boxes_errors_name_the_line(tmp_path, rows, message):
    data = box_csv(tmp_path, rows * 4)
    data.observe = "size"
    with pytest.raises(ValueError, match=message):
        data.setup("fit")


def test_csv_without_boxes_column_says_how_to_add_one():
    data = CSVDataModule(
        root=str(FIXTURES / "folder"), class_names="classes.txt", num_workers=0, observe="center"
    )
    with pytest.raises(ValueError, match="has no 'boxes' column: add one .* or given"):
        data.setup("fit")


def test_a_csv_is_parsed_once_and_summarised_once_when_boxes_choose_the_positive(
    tmp_path, monkeypatch, info_lines
):
    from spml_lightning.data import csv_datamodule

    data = box_csv(tmp_path, ROWS)
    data.observe = "size"
    parsed = []
    read = csv_datamodule.read_csv_rows
    monkeypatch.setattr(
        csv_datamodule, "read_csv_rows", lambda path: parsed.append(path) or read(path)
    )
    data.setup("fit")
    assert parsed == [tmp_path / "train.csv"]  # class names, labels and boxes from one parse
    summaries = [line for line in info_lines if line.startswith(f"CSVDataModule: {tmp_path}")]
    assert len(summaries) == 1, summaries


def test_the_dispatch_over_strategies_keeps_given_labels_and_names_what_a_set_supports():
    from spml_lightning.data.observation import observed_labels

    labels = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=np.uint8)
    given = np.eye(3)
    warned = []

    def run(strategy, given_labels, has_boxes=False):
        def no_boxes():
            raise AssertionError("only a box strategy reads the boxes")

        return observed_labels(
            strategy, "train", labels, given_labels, seed=0, num_pos=1, num_neg=0,
            has_boxes=has_boxes, load_boxes=no_boxes, name="Mine", warn=warned.append,
        )  # fmt: skip

    observed, by = run("uniform", given)
    assert by == "given" and (observed == given).all()
    observed, by = run("frequency", given)
    assert by == "frequency" and observed.sum() == 3 and warned  # given ones ignored, said so
    with pytest.raises(ValueError, match="comes without observed labels"):
        run("given", None)
    with pytest.raises(ValueError, match="Mine does not have. It supports observe: uniform, freq"):
        run("size", None)


# -- boxes the image cannot hold ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["size", "center"])
def test_csv_boxes_in_normalised_coordinates_are_refused(tmp_path, strategy):
    # YOLO-style boxes: inside the image's top-left pixel they would pick a class at random.
    data = box_csv(tmp_path, [("dog;tv", "dog:0.7 0.7 0.2 0.2;tv:0.3 0.3 0.2 0.2")] * 4)
    data.observe = strategy
    with pytest.raises(ValueError, match="normalised coordinates") as error:
        data.setup("fit")
    message = str(error.value)
    assert "every box of 4 images lies within [0, 1]" in message
    assert "train.csv, line 2 (" in message and "'dog': box x 0.7 y 0.7 w 0.2 h 0.2" in message
    assert "in an image of 40 x 20 px" in message


@pytest.mark.parametrize("strategy", ["size", "center"])
def test_csv_boxes_outside_the_image_are_refused(tmp_path, strategy):
    rows = [("cat", "cat:1 1 2 2"), ("dog;tv", "dog:1000 1000 4 4;tv:-50 -50 20 6")] * 2
    data = box_csv(tmp_path, rows)
    data.observe = strategy
    with pytest.raises(ValueError, match="4 of 6 boxes reach outside their image") as error:
        data.setup("fit")
    assert "train.csv, line 3 (" in str(error.value)
    assert "'dog': box x 1000 y 1000 w 4 h 4 in an image of 40 x 20 px" in str(error.value)


def test_a_box_overshooting_by_the_tolerance_is_accepted(tmp_path):
    # One pixel past the 40 x 20 image's border: annotation tools round.
    data = box_csv(tmp_path, [("cat;dog", "cat:-1 0 41 21;dog:10 5 4 4")] * 4)
    data.observe = "size"
    assert set(map(tuple, observed_classes(data).values())) == {("cat",)}


def test_voc_box_outside_its_image_names_the_xml(tmp_path):
    root = copy_fixture("voc", tmp_path)
    xml = root / "VOCdevkit" / "VOC2012" / "Annotations" / "2008_000008.xml"
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xml.write_text(text[:start] + "5000" + text[text.index("</xmax>") :])
    with pytest.raises(ValueError, match="1 of .* boxes reach outside their image") as error:
        voc(root, observe="center", cache=False).setup("fit")
    assert f"{xml}, 'aeroplane': box x" in str(error.value)
    assert "in an image of 500 x 375 px" in str(error.value)


def test_voc_xml_without_size_is_checked_against_the_jpeg(tmp_path):
    from spml_lightning.data.io import image_size

    root = copy_fixture("voc", tmp_path)
    devkit = root / "VOCdevkit" / "VOC2012"
    xml = devkit / "Annotations" / "2008_000008.xml"
    text = xml.read_text()
    xml.write_text(text[: text.index("<size>")] + text[text.index("</size>") + len("</size>") :])
    width, height = image_size(str(devkit / "JPEGImages" / "2008_000008.jpg"))
    with pytest.raises(ValueError, match=f"in an image of {width} x {height} px"):
        voc(root, observe="size", cache=False).setup("fit")


def test_coco_box_outside_its_image_names_the_annotation(tmp_path):
    root = copy_fixture("coco", tmp_path)
    path = root / "annotations" / "instances_train2014.json"
    document = json.loads(path.read_text())
    document["annotations"][0]["bbox"] = [-40, 11, 16, 3]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="1 of .* boxes reach outside their image") as error:
        coco(root, observe="size", cache=False).setup("fit")
    assert f"{path}, an annotation of image id 800 (" in str(error.value)
    assert "box x -40 y 11 w 16 h 3 in an image of 24 x 24 px" in str(error.value)
    document["annotations"][0]["bbox"] = [10, 11, -6, 3]  # no box at all
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="or have a negative width or height, e.g.:\n.* w -6 h 3"):
        coco(root, observe="center", cache=False).setup("fit")


def test_given_without_observed_labels_suggests_only_the_strategies_the_data_supports():
    cub = CUBDataModule(root=str(FIXTURES / "cub"), num_workers=0, observe="given", cache=False)
    with pytest.raises(ValueError, match=r"another strategy \(observe: uniform, frequency\)\."):
        cub.setup("fit")
    with pytest.raises(ValueError, match=r"\(observe: uniform, frequency, size, center\)\."):
        voc(FIXTURES / "voc", cache=False, observe="given").setup("fit")
