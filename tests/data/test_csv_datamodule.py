"""CSVDataModule: a user's own images and CSV files."""

import csv
import re

import numpy as np
import pytest

from spml_lightning.data import CSVDataModule

from community_reference import FIXTURES, assert_protocol, copy_fixture

ROOT = FIXTURES / "folder"
CLASSES = ["cat", "dog", "potted plant", "tv"]


def read_csv(path):
    """The fixture's CSV as (files, labels, observed or None), read independently."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([[int(c in r["labels"].split(";")) for c in CLASSES] for r in rows])
    observed = None
    if "observed" in rows[0]:
        observed = np.array([[float(c == r["observed"]) for c in CLASSES] for r in rows])
    return [r["image"] for r in rows], labels, observed


def make(root=ROOT, **kwargs) -> CSVDataModule:
    return CSVDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_given_observed_labels_and_generated_single_positives():
    train_files, train_labels, train_observed = read_csv(ROOT / "train.csv")
    test_files, test_labels, _ = read_csv(ROOT / "test.csv")
    assert (train_labels.sum(1) == 0).any()  # an image without labels is a row too
    data = make(class_names="classes.txt")
    assert data.class_names == CLASSES
    assert_protocol(
        data, ROOT, (train_files, train_labels), (test_files, test_labels),
        given_observed={"train": train_observed},  # test.csv has none: the protocol's
    )  # fmt: skip


def test_class_names_from_the_csv_or_a_list():
    assert make().class_names == CLASSES  # every name used, sorted
    assert make(class_names=["tv", "potted plant", "dog", "cat"]).class_names[0] == "tv"


def test_indices(tmp_path):
    (tmp_path / "a.png").write_bytes((ROOT / "images" / "train_00.png").read_bytes())
    (tmp_path / "train.csv").write_text("image,labels\na.png,0;2\n")
    data = make(tmp_path, label_format="indices", test_csv=None)
    assert data.class_names == ["class_0", "class_1", "class_2"]
    np.testing.assert_array_equal(data.load_phase("train").labels, [[1, 0, 1]])
    with pytest.raises(ValueError, match="no test_csv"):
        data.setup("test")


@pytest.mark.parametrize(
    "content, message",
    [
        ("file,labels\na.png,cat\n", "must name the columns 'image' and 'labels'"),
        ("image,labels\na.png,cat\na.png,dog\n", r"a.png is listed twice \(lines 2 and 3\)"),
        ("image,labels\na.png,lion\n", r"line 2: unknown class 'lion'"),
        ("image,labels,observed\na.png,cat,dog\n", "not positive in the full labels"),
        # The same file written two ways.
        (
            "image,labels\nimages/train_00.png,cat\n./images/train_00.png,dog\n",
            r"train_00.png is listed twice \(lines 2 and 3\), "
            r"written 'images/train_00.png' and './images/train_00.png'",
        ),
        (
            "image,labels\nimages/train_00.png,\nimages/train_01.png,\n",
            r"train.csv: none of its 2 rows has a label",
        ),
        # Labels separated by the CSV's own ',': unquoted, then quoted.
        (
            "image,labels\nimages/train_00.png,cat,dog\n",
            r"line 2: 3 cells for the 2 columns \['image', 'labels'\]",
        ),
        (
            'image,labels\nimages/train_00.png,"cat,dog"\n',
            r"unknown class 'cat,dog'.*: write 'cat;dog'",
        ),
        (
            "image,labels\nimages/train_00.png,dgo\n",
            r"unknown class 'dgo' \(did you mean 'dog'\?\)",
        ),
    ],
)
def test_bad_csv_is_explained(tmp_path, content, message):
    root = copy_fixture("folder", tmp_path)
    (root / "train.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        make(root, class_names=CLASSES).setup("fit")


def test_missing_csv_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="header 'image,labels"):
        _ = make(tmp_path).class_names


def test_setup_reports_the_classes_and_their_counts(info_lines):
    make(class_names="classes.txt").setup()
    train_files, train_labels, train_observed = read_csv(ROOT / "train.csv")
    test_files, test_labels, _ = read_csv(ROOT / "test.csv")

    def counts(matrix):
        return {name: int(n) for name, n in zip(CLASSES, matrix.sum(0), strict=True)}

    assert info_lines == [
        f"CSVDataModule: {ROOT / 'train.csv'}: {len(train_files)} images "
        f"(1 without a label), 4 classes; positives per class {counts(train_labels)}; "
        f"observed positives per class {counts(train_observed)}",
        # The split's count (base.py): train_03, the CSV's image without a label, is a val row.
        "CSVDataModule: 0 of 10 train and 1 of 2 val images have no positive label; training "
        "keeps them (no observed positive); val evaluation keeps them (eval_label_less=keep).",
        f"CSVDataModule: {ROOT / 'test.csv'}: {len(test_files)} images "
        f"(1 without a label), 4 classes; positives per class {counts(test_labels)}",
        "CSVDataModule: 1 of 6 test images have no positive label; test evaluation keeps them "
        "(eval_label_less=keep).",
    ]


def test_doubtful_class_names_are_flagged(tmp_path):
    root = copy_fixture("folder", tmp_path)
    rows = ['"dog,tv"', "dgo", "dog", "dog;tv", "cat|tv", "cat;tv", "cat"]  # lines 2..8
    (root / "train.csv").write_text(
        "image,labels\n"
        + "".join(f"images/train_{i:02d}.png,{labels}\n" for i, labels in enumerate(rows))
    )
    with pytest.warns(UserWarning) as record:
        data = make(root, test_csv=None)
        assert data.class_names == [
            "cat",
            "cat|tv",
            "dgo",
            "dog",
            "dog,tv",
            "tv",
        ]  # what was asked, flagged
    joined, once = (str(w.message) for w in record)
    where = f"{root / 'train.csv'}, line"
    assert joined == (
        "CSVDataModule: 2 of the 6 class names in the CSVs hold a label separator other than "
        "label_separator=';', e.g.:\n"
        f"  {where} 6: 'cat|tv' looks like labels separated by '|': pass label_separator='|' "
        "if your CSVs separate labels with it (now ';'), or write 'cat;tv'.\n"
        f"  {where} 2: 'dog,tv' looks like labels separated by ',', which separates the CSV's "
        "columns and cannot separate labels: write 'dog;tv'."
    )
    assert once.startswith(
        "CSVDataModule: 1 of the 6 class names in the CSVs are used by a single image, typos?\n"
        f"  {where} 3: 'dgo' (did you mean 'dog'?)\nFix them, or pass class_names"
    )


def test_csv_encodings(tmp_path):
    root = copy_fixture("folder", tmp_path)
    expected = make(root, class_names=CLASSES).load_phase("train")
    text = (root / "train.csv").read_text()
    # UTF-16 with a byte-order mark (Windows PowerShell's `>`) is read as UTF-8 is, CSVs and
    # class names.
    (root / "train.csv").write_text(text, encoding="utf-16")
    (root / "classes.txt").write_text("\n".join(CLASSES), encoding="utf-16")
    data = make(root, class_names="classes.txt")
    assert data.class_names == CLASSES
    got = data.load_phase("train")
    assert got.image_paths == expected.image_paths
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_array_equal(got.observed, expected.observed)
    # Any other encoding is an error that names the file.
    path = re.escape(str(root / "train.csv"))
    (root / "train.csv").write_bytes(text.replace("dog", "d\u00f8g").encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path}, line 2: not UTF-8 text .*Save it as UTF-8"):
        make(root, class_names=CLASSES).load_phase("train")
    (root / "train.csv").write_bytes(text.encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(ValueError, match=rf"{path} holds NUL characters: probably UTF-16 without"):
        make(root, class_names=CLASSES).load_phase("train")


@pytest.mark.parametrize(
    ("old", "new"),
    [("FolderDataModule", "CSVDataModule"), ("ImageFolderDataModule", "UnlabelledImageDataModule")],
)
def test_former_names_build_the_renamed_class_and_say_so(old, new, tmp_path):
    import spml_lightning.data as data

    kwargs = (
        {"root": str(ROOT), "num_workers": 0}
        if old == "FolderDataModule"
        else {"root": str(tmp_path), "class_names": ["a"], "image_size": 32}
    )
    with pytest.warns(FutureWarning, match=f"{old} was renamed {new}: write class_path"):
        module = getattr(data, old)(**kwargs)
    assert isinstance(module, getattr(data, new))


def test_a_config_naming_the_former_class_path_still_runs(tmp_path):
    from spml_lightning.cli import run_cli

    with pytest.warns(FutureWarning, match="FolderDataModule was renamed CSVDataModule"):
        cli = run_cli(
            [
                "--data", "spml_lightning.data.FolderDataModule",
                "--data.init_args.root", str(ROOT), "--data.init_args.num_workers", "0",
                "--model.backbone", "resnet18", "--model.weights", "none",
            ],
            run=False,
        )  # fmt: skip
    assert isinstance(cli.datamodule, CSVDataModule)


def test_a_labelled_row_with_an_empty_observed_cell_is_warned_about(tmp_path):
    root = copy_fixture("folder", tmp_path)
    lines = (root / "train.csv").read_text().splitlines()
    lines[1] = 'images/train_00.png,"dog;tv",'  # labelled, nothing observed
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    data = make(root, test_csv=None, class_names=CLASSES)
    with pytest.warns(UserWarning, match=r"1 of the \d+ labelled rows of .*train.csv observe no "
                      r"positive \(an empty 'observed' cell; lines 2\)"):  # fmt: skip
        data.setup("fit")
    # Under a strategy that makes the observed labels itself, the column is not used.
    other = make(root, test_csv=None, class_names=CLASSES, observe="frequency")
    with pytest.warns(UserWarning) as record:
        other.setup("fit")
    assert not any("observe no positive" in str(w.message) for w in record)
