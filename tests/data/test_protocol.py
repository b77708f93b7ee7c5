"""The SPML protocol against an independent transcription of Cole et al.'s released code."""

import numpy as np
import pytest

from spml_lightning.data.protocol import observe_single_positive, split_train_val


def community_observe(labels: np.ndarray, seed: int, num_pos: int, num_neg: int) -> np.ndarray:
    """``preproc/generate_observed_labels.py`` step by step: -1/+1 labels, two shuffles a row."""
    signed = labels.astype(np.float64).copy()
    signed[signed == 0] = -1
    rng = np.random.RandomState(seed)
    obs = np.zeros_like(signed)
    for i in range(signed.shape[0]):
        pos = np.nonzero(signed[i, :] == 1.0)[0]
        rng.shuffle(pos)
        obs[i, pos if num_pos == -1 else pos[:num_pos]] = 1.0
        neg = np.nonzero(signed[i, :] == -1.0)[0]
        rng.shuffle(neg)
        obs[i, neg if num_neg == -1 else neg[:num_neg]] = -1.0
    return obs


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 20)) < 0.15).astype(np.float64)
    labels[5] = 0  # a row without positives (NUS-WIDE has ~22% of them)
    labels[7] = 1  # a row with every label positive
    return labels


@pytest.mark.parametrize("num_pos,num_neg", [(1, 0), (2, 0), (1, 3), (-1, 0), (1, -1)])
def test_observe_matches_community_bytes(labels, num_pos, num_neg):
    ours = observe_single_positive(labels, 1200, num_pos, num_neg)
    theirs = community_observe(labels, 1200, num_pos, num_neg)
    assert ours.dtype == theirs.dtype == np.float64
    assert ours.tobytes() == theirs.tobytes()


def test_single_positive_semantics(labels):
    obs = observe_single_positive(labels)
    has_pos = labels.sum(1) > 0
    assert (obs.sum(1)[has_pos] == 1).all()  # exactly one positive where any exists
    assert (obs[~has_pos] == 0).all()  # rows without positives stay unknown
    assert ((obs == 1) <= (labels == 1)).all()  # only true positives are observed
    assert set(np.unique(obs)) <= {0.0, 1.0}


def test_negative_shuffle_consumes_random_state(labels):
    # Skipping the (empty) negative draw would change every later row: the
    # community generator always shuffles the negatives.
    obs = observe_single_positive(labels)
    rng = np.random.RandomState(1200)
    naive = np.zeros_like(obs)
    for i, row in enumerate(labels):
        pos = np.nonzero(row == 1)[0]
        rng.shuffle(pos)
        naive[i, pos[:1]] = 1
    assert not np.array_equal(obs, naive)


def test_integer_labels_give_same_result(labels):
    as_uint8 = observe_single_positive(labels.astype(np.uint8))
    assert as_uint8.tobytes() == observe_single_positive(labels).tobytes()


def test_split_matches_spec():
    n = 5717  # VOC 2012 official train
    train, val = split_train_val(n)
    perm = np.random.RandomState(1200).permutation(n)
    n_val = int(np.round(0.2 * n))
    assert n_val == 1143
    np.testing.assert_array_equal(train, np.sort(perm[: n - n_val]))
    np.testing.assert_array_equal(val, np.sort(perm[-n_val:]))
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == n


def test_split_pinned_small_case():
    # RandomState(1200).permutation(10) = [9 4 6 1 8 5 2 0 7 3] (numpy's frozen legacy
    # generator): the last two rows of the permutation go to val.
    assert np.random.RandomState(1200).permutation(10).tolist() == [9, 4, 6, 1, 8, 5, 2, 0, 7, 3]
    train, val = split_train_val(10, 0.2, 1200)
    assert val.tolist() == [3, 7]
    assert train.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"labels": np.zeros(5)}, "2-D"),
        ({"labels": np.full((2, 3), 2.0)}, "only 0 and 1"),
        ({"labels": np.zeros((2, 3)), "num_pos": -2}, "num_pos"),
        ({"labels": np.zeros((2, 3)), "num_neg": 1.5}, "num_neg"),
    ],
)
def test_observe_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        observe_single_positive(**kwargs)


@pytest.mark.parametrize(
    "n,frac,match", [(0, 0.2, "positive"), (10, 1.0, "val_fraction"), (10, -0.1, "val_fraction")]
)
def test_split_rejects_bad_input(n, frac, match):
    with pytest.raises(ValueError, match=match):
        split_train_val(n, frac)
