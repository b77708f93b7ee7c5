"""Ranking the unknown labels, precision@N against a random ranking, the CSV, the options."""

import csv

import numpy as np
import pytest

from spml_lightning.training.atomic_io import atomic_write
from spml_lightning.training.suggestions import (
    DEFAULT_TOP_N,
    SuggestionPrecision,
    SuggestOptions,
    check_output,
    rank_unknown_labels,
    suggestion_precision,
    write_suggestions_csv,
)

# Three images, three classes. Unknown (observed 0), row-major: (0,1) .2, (0,2) .6, (1,0) .7,
# (2,0) .3, (2,1) .6. Not candidates: the observed positives (0,0) .9 -- the most probable label
# -- (1,1) and (2,2), and the observed negative (1,2).
PROBABILITIES = np.array([[0.9, 0.2, 0.6], [0.7, 0.8, 0.1], [0.3, 0.6, 0.5]], dtype=np.float32)
OBSERVED = np.array([[1, 0, 0], [0, 1, -1], [0, 0, 1]], dtype=np.int8)
# Full labels: the unknown positives (missing positives) are (0,2) and (1,0): 2 of 5.
TARGETS = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)


def pairs(suggestions):
    return list(zip(suggestions.images.tolist(), suggestions.classes.tolist(), strict=True))


def test_ranks_only_the_unknown_labels_most_probable_first_ties_in_image_order():
    ranked = rank_unknown_labels(PROBABILITIES, OBSERVED)
    # .7, then the two .6 (image 0 before image 2), .3, .2.
    assert pairs(ranked) == [(1, 0), (0, 2), (2, 1), (2, 0), (0, 1)]
    np.testing.assert_allclose(ranked.probabilities, [0.7, 0.6, 0.6, 0.3, 0.2], rtol=1e-6)
    assert ranked.unknown == 5 and len(ranked) == 5


def test_top_n_and_threshold():
    assert pairs(rank_unknown_labels(PROBABILITIES, OBSERVED, top_n=2)) == [(1, 0), (0, 2)]
    # The threshold keeps labels at it (0.6 >= 0.6), and still counts every unknown label.
    at = rank_unknown_labels(PROBABILITIES, OBSERVED, threshold=float(np.float32(0.6)))
    assert pairs(at) == [(1, 0), (0, 2), (2, 1)] and at.unknown == 5
    assert pairs(rank_unknown_labels(PROBABILITIES, OBSERVED, top_n=2, threshold=0.65)) == [(1, 0)]
    none = rank_unknown_labels(PROBABILITIES, OBSERVED, threshold=0.95)
    assert len(none) == 0 and none.unknown == 5


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\(3, 3\) and observed labels \(3, 2\)"):
        rank_unknown_labels(PROBABILITIES, OBSERVED[:, :2])


def test_precision_at_n_against_a_random_ranking():
    top3 = rank_unknown_labels(PROBABILITIES, OBSERVED, top_n=3)
    result = suggestion_precision(top3, OBSERVED, TARGETS)
    # (1,0) and (0,2) are missing positives, (2,1) is not: 2 of 3. A random ranking of the 5
    # unknown labels finds the 2 missing positives at a rate of 2/5.
    assert result == SuggestionPrecision(suggested=3, hits=2, random=0.4)
    assert result.precision == pytest.approx(2 / 3) and result.ratio == pytest.approx(5 / 3)
    assert str(result) == "precision@3 0.667 (random ranking 0.400, 1.7x)"
    top1 = suggestion_precision(
        rank_unknown_labels(PROBABILITIES, OBSERVED, top_n=1), OBSERVED, TARGETS
    )
    assert str(top1) == "precision@1 1.000 (random ranking 0.400, 2.5x)"


def test_no_precision_without_full_labels_or_suggestions():
    ranked = rank_unknown_labels(PROBABILITIES, OBSERVED)
    # The labels are the observed positives only (a user's single-positive CSV): nothing to check.
    assert suggestion_precision(ranked, OBSERVED, (OBSERVED == 1).astype(np.uint8)) is None
    empty = rank_unknown_labels(PROBABILITIES, OBSERVED, threshold=0.95)
    assert suggestion_precision(empty, OBSERVED, TARGETS) is None


def test_csv_rows_and_columns(tmp_path):
    path = tmp_path / "out" / "suggestions.csv"  # the folder is created
    ranked = rank_unknown_labels(PROBABILITIES, OBSERVED, top_n=3)
    write_suggestions_csv(path, ranked, ["a.png", "b.png", "c.png"], ["cat", "dog", "tv"])
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["image", "class", "probability", "rank"],
        ["b.png", "cat", "0.7", "1"],
        ["a.png", "tv", "0.6", "2"],
        ["c.png", "dog", "0.6", "3"],
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == ["suggestions.csv"]  # no temporaries


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "suggestions.csv"
    path.write_text("old")

    def fail(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_options_defaults_and_limit():
    assert SuggestOptions().limit == DEFAULT_TOP_N == 100
    assert SuggestOptions(threshold=0.5).limit is None  # every label above the threshold
    assert SuggestOptions(top_n=7, threshold=0.5).limit == 7
    assert SuggestOptions(top_n=1).limit == 1


@pytest.mark.parametrize(
    "options,message",
    [
        ({"top_n": 0}, "--suggestions.top_n 0: the number of suggestions must be at least 1"),
        ({"top_n": -3}, "--suggestions.top_n -3"),
        ({"threshold": 0.0}, "--suggestions.threshold 0.0: a probability strictly between 0"),
        ({"threshold": 1.0}, "--suggestions.threshold 1.0"),
        ({"output": "s.txt"}, "--suggestions.output s.txt: the suggestions are a CSV file"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        SuggestOptions(**options)


def test_an_existing_output_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "s.csv"
    check_output(path, overwrite=False)  # not there yet: fine
    path.write_text("")
    with pytest.raises(FileExistsError, match="--suggestions.overwrite true"):
        check_output(path, overwrite=False)
    check_output(path, overwrite=True)
