"""Tests of spml_lightning.losses.gr_schedule, pinned to hand-computed values.

The reference ramp is the published GR code's (github.com/yan4xi1/GRLoss), with e the
1-based epoch, T the epochs and n the head-only epochs: w, b move by max(e - n - 1, 0) / (T - n)
of their range, μ, σ by max(e - n, 0) / (T - n).
"""

from __future__ import annotations

import pytest

from spml_lightning.losses.gr_schedule import (
    GRParameters,
    gr_parameters,
    linear_ramp_fraction,
    reference_ramp_fractions,
)

VOC_BETA = (0.0, 2.0, -2.0, -2.0)
VOC_ALPHA = (0.5, 2.0, 0.8, 0.5)
COCO_BETA = (0.0, 10.0, -2.0, -8.0)

# σ from 2.0 to 0.5 in 7 equal steps over 8 epochs: the reference ramp with one head-only
# epoch (max(e - 1, 0) / 7) and the linear ramp (epoch / 7) give the same values.
SIGMA_2_TO_HALF_IN_7_STEPS = [
    2.0,
    1.7857142857142858,
    1.5714285714285714,
    1.3571428571428572,
    1.1428571428571428,
    0.9285714285714286,
    0.7142857142857143,
    0.5,
]


def _table(mode: str, beta, alpha, max_epochs: int, linear_init: int = 0) -> dict[str, list[float]]:
    rows = [
        gr_parameters(e, max_epochs, beta, alpha, linear_init=linear_init, mode=mode)
        for e in range(max_epochs)
    ]
    return {name: [getattr(r, name) for r in rows] for name in ("w", "b", "mu", "sigma")}


def test_reference_voc_8_epochs() -> None:
    # e = epoch + 1; w, b use (e - 1) / 8, mu, sigma use e / 8.
    got = _table("reference", VOC_BETA, VOC_ALPHA, 8)
    assert got["w"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75], abs=1e-12)
    assert got["b"] == pytest.approx([-2.0] * 8, abs=1e-12)
    assert got["mu"] == pytest.approx(
        [0.5375, 0.575, 0.6125, 0.65, 0.6875, 0.725, 0.7625, 0.8], abs=1e-12
    )
    assert got["sigma"] == pytest.approx(
        [1.8125, 1.625, 1.4375, 1.25, 1.0625, 0.875, 0.6875, 0.5], abs=1e-12
    )


def test_reference_voc_8_epochs_linear_init_1() -> None:
    # n = 1, T - n = 7: w uses max(e - 2, 0) / 7, mu uses max(e - 1, 0) / 7.
    got = _table("reference", VOC_BETA, VOC_ALPHA, 8, linear_init=1)
    assert got["w"] == pytest.approx(
        [
            0.0,
            0.0,
            0.2857142857142857,
            0.5714285714285714,
            0.8571428571428571,
            1.1428571428571428,
            1.4285714285714286,
            1.7142857142857142,
        ],
        abs=1e-12,
    )
    assert got["b"] == pytest.approx([-2.0] * 8, abs=1e-12)
    assert got["mu"] == pytest.approx(
        [
            0.5,
            0.5428571428571428,
            0.5857142857142857,
            0.6285714285714286,
            0.6714285714285714,
            0.7142857142857143,
            0.7571428571428571,
            0.8,
        ],
        abs=1e-12,
    )
    assert got["sigma"] == pytest.approx(SIGMA_2_TO_HALF_IN_7_STEPS, abs=1e-12)


def test_reference_coco_beta() -> None:
    got = _table("reference", COCO_BETA, VOC_ALPHA, 8)
    assert got["w"] == pytest.approx([0.0, 1.25, 2.5, 3.75, 5.0, 6.25, 7.5, 8.75], abs=1e-12)
    assert got["b"] == pytest.approx(
        [-2.0, -2.75, -3.5, -4.25, -5.0, -5.75, -6.5, -7.25], abs=1e-12
    )


def test_linear_mode_8_epochs() -> None:
    # f = epoch / 7: start values at epoch 0, end values at epoch 7.
    got = _table("linear", COCO_BETA, VOC_ALPHA, 8)
    assert got["w"] == pytest.approx(
        [
            0.0,
            1.4285714285714286,
            2.857142857142857,
            4.285714285714286,
            5.714285714285714,
            7.142857142857143,
            8.571428571428571,
            10.0,
        ],
        abs=1e-12,
    )
    assert got["b"] == pytest.approx(
        [
            -2.0,
            -2.857142857142857,
            -3.7142857142857144,
            -4.571428571428571,
            -5.428571428571429,
            -6.285714285714286,
            -7.142857142857143,
            -8.0,
        ],
        abs=1e-12,
    )
    assert got["mu"][0] == pytest.approx(0.5) and got["mu"][-1] == pytest.approx(0.8)
    assert got["sigma"] == pytest.approx(SIGMA_2_TO_HALF_IN_7_STEPS, abs=1e-12)


def test_linear_mode_with_linear_init() -> None:
    # n = 2, T = 8: f = clamp((epoch - 2) / 5, 0, 1).
    got = _table("linear", VOC_BETA, VOC_ALPHA, 8, linear_init=2)
    assert got["w"] == pytest.approx([0.0, 0.0, 0.0, 0.4, 0.8, 1.2, 1.6, 2.0], abs=1e-12)
    assert got["mu"] == pytest.approx([0.5, 0.5, 0.5, 0.56, 0.62, 0.68, 0.74, 0.8], abs=1e-12)


def test_linear_mode_single_remaining_epoch_is_end_values() -> None:
    assert linear_ramp_fraction(0, 1) == 1.0
    assert linear_ramp_fraction(3, 4, linear_init=3) == 1.0
    assert linear_ramp_fraction(0, 4, linear_init=3) == 0.0


def test_epochs_past_max_keep_end_values() -> None:
    assert reference_ramp_fractions(20, 8) == (1.0, 1.0)
    assert reference_ramp_fractions(8, 8) == (1.0, 1.0)
    assert linear_ramp_fraction(20, 8) == 1.0
    params = gr_parameters(20, 8, VOC_BETA, VOC_ALPHA)
    assert params == GRParameters(w=2.0, b=-2.0, mu=0.8, sigma=0.5)


def test_as_dict() -> None:
    assert gr_parameters(0, 8, VOC_BETA, VOC_ALPHA).as_dict() == pytest.approx(
        {"w": 0.0, "b": -2.0, "mu": 0.5375, "sigma": 1.8125}
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_epochs": 0}, "max_epochs"),
        ({"linear_init": 8}, "linear_init"),
        ({"linear_init": -1}, "linear_init"),
        ({"epoch": -1}, "epoch"),
        ({"beta": (0.0, 2.0, -2.0)}, "beta"),
        ({"alpha": (0.5, 2.0, 0.8, 0.5, 1.0)}, "alpha"),
        ({"alpha": (0.5, 0.0, 0.8, 0.5)}, "sigma0"),
        ({"alpha": (0.5, 2.0, 0.8, -0.5)}, "sigmaT"),
        ({"beta": (0.0, float("nan"), -2.0, -2.0)}, "beta"),
        ({"mode": "cosine"}, "mode.*reference.*linear"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    args = {
        "epoch": 0,
        "max_epochs": 8,
        "beta": VOC_BETA,
        "alpha": VOC_ALPHA,
        "linear_init": 0,
        "mode": "reference",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gr_parameters(**args)


def test_non_integer_epoch_is_rejected() -> None:
    with pytest.raises(TypeError, match="epoch"):
        gr_parameters(1.5, 8, VOC_BETA, VOC_ALPHA)  # type: ignore[arg-type]
