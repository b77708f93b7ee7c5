"""Hostile input, table-driven: a bad config or image file gets a clear error or is read correctly.

"Clear" means: our exception type with a message naming the problem (and the
file), raised from our code or the argument parser -- never a bare traceback
from deep inside torch. Label CSVs with unknown class names and duplicated
image rows are in the same kind of table in tests/data/test_csv_datamodule.py.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spml_lightning.cli import run_cli
from spml_lightning.data.base import SPMLImageDataset
from spml_lightning.data.io import load_rgb, unreadable_reason
from spml_lightning.data.transforms import reference_transform

from image_files import decompression_bomb, noise, write_png_rgb48
from probes import demo_args


def assert_not_from_torch(excinfo: pytest.ExceptionInfo) -> None:
    raised_in = str(excinfo.traceback[-1].path)
    assert f"{Path('site-packages', 'torch')}" not in raised_in, f"raised inside torch: {raised_in}"


# -- images ----------------------------------------------------------------------------------------


def truncated_jpeg(path: Path) -> None:
    Image.fromarray(noise()).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


GRAY16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
RGB48 = np.stack([GRAY16, GRAY16[::-1], np.full_like(GRAY16, 40000)], axis=-1)
PALETTE = [255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6)


def palette_png(path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    image.putpalette(PALETTE)
    image.save(path, transparency=0)


def float_tiff(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).random((8, 8), dtype=np.float32), mode="F").save(path)


def directory(path: Path) -> None:
    path.mkdir()


#: (file name, writer, expected RGB array or None, error type, message pattern)
IMAGE_CASES: list[
    tuple[str, Callable[[Path], None], Callable[[], np.ndarray] | None, type | None, str]
] = [
    ("empty.jpg", lambda p: p.write_bytes(b""), None, OSError, "Cannot read image"),
    ("truncated.jpg", truncated_jpeg, None, OSError, "Cannot read image.*truncated"),
    (
        "notes.jpg",
        lambda p: p.write_text("not an image\n"),
        None,
        OSError,
        "Cannot read image.*cannot identify",
    ),
    ("folder.jpg", directory, None, OSError, "Cannot read image"),
    (
        "bomb.png",
        decompression_bomb,
        None,
        OSError,
        "Cannot read image.*decompression bomb.*MAX_IMAGE_PIXELS",
    ),
    ("absent.jpg", lambda p: None, None, FileNotFoundError, "Image file not found"),
    ("float.tif", float_tiff, None, OSError, "floating-point"),
    # 16-bit grey: Pillow's convert("RGB") would clip it to white; scaled instead.
    (
        "gray16.png",
        lambda p: Image.fromarray(GRAY16).save(p),
        lambda: np.repeat(np.rint(GRAY16 / 257.0).astype(np.uint8)[..., None], 3, axis=-1),
        None,
        "",
    ),
    ("rgb48.png", lambda p: write_png_rgb48(p, RGB48), lambda: RGB48 / 257.0, None, ""),
    (
        "cmyk.jpg",
        lambda p: Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(p, quality=100),
        lambda: np.tile(np.array([255, 0, 255]), (8, 8, 1)),
        None,
        "",
    ),
    (
        "palette.png",
        palette_png,
        lambda: np.array([[[255, 0, 0], [0, 0, 255]], [[0, 0, 255], [255, 0, 0]]]),
        None,
        "",
    ),
    (
        "rgba.png",
        lambda p: Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(p),
        lambda: np.tile(np.array([10, 20, 30]), (4, 4, 1)),
        None,
        "",
    ),
    (
        "gray.png",
        lambda p: Image.new("L", (4, 4), 77).save(p),
        lambda: np.full((4, 4, 3), 77),
        None,
        "",
    ),
    (
        "bilevel.png",
        lambda p: Image.new("1", (4, 4), 1).save(p),
        lambda: np.full((4, 4, 3), 255),
        None,
        "",
    ),
]


@pytest.mark.parametrize(
    "name,write,expected,error,pattern", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES]
)
def test_image_files(tmp_path, name, write, expected, error, pattern):
    path = tmp_path / name
    write(path)
    dataset = SPMLImageDataset(
        [str(path)],
        np.ones((1, 2), np.uint8),
        np.array([[1, 0]], np.int8),
        reference_transform(16, False),
    )
    if error is not None:
        for read in (lambda: load_rgb(str(path)), lambda: dataset[0]):
            with pytest.raises(error, match=pattern) as excinfo:
                read()
            assert str(path) in str(excinfo.value)  # names the file
            assert_not_from_torch(excinfo)
        return
    rgb = load_rgb(str(path))
    assert rgb.mode == "RGB"
    # JPEG is lossy; PNG paths must be exact (up to the 16 -> 8 bit rounding).
    tolerance = 8 if name.endswith(".jpg") else 1
    np.testing.assert_allclose(np.asarray(rgb, dtype=float), expected(), atol=tolerance)
    image = dataset[0]["image"]
    assert image.shape == (3, 16, 16) and torch.isfinite(image).all()


def test_decompression_bomb_names_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(noise()).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32 x 32 is more than twice that
    with pytest.raises(OSError, match=re.escape(str(path)) + ".*MAX_IMAGE_PIXELS"):
        load_rgb(str(path))


def test_unreadable_reason_reports_a_decompression_bomb(tmp_path, monkeypatch):
    """The check of skip_unreadable gives a reason for a bomb, as for a truncated file.

    It does not raise.
    """
    bomb = tmp_path / "bomb.png"
    decompression_bomb(bomb)
    assert re.match(r"DecompressionBombError: .*MAX_IMAGE_PIXELS", unreadable_reason(str(bomb)))
    # Between the limit and twice it Pillow only warns; where warnings are errors, that is
    # unreadable too.
    large = tmp_path / "large.png"
    Image.fromarray(noise()).save(large)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 32 x 32 is 1024
    with pytest.warns(Image.DecompressionBombWarning):
        assert unreadable_reason(str(large)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert unreadable_reason(str(large)).startswith("DecompressionBombWarning: ")
        with pytest.raises(OSError, match=re.escape(str(large)) + ".*MAX_IMAGE_PIXELS"):
            load_rgb(str(large))


# -- configs ---------------------------------------------------------------------------------------


def formatted_config(tmp_path: Path, tiny_demo_root: Path, **init_args) -> list[str]:
    lines = [
        "model: {backbone: resnet18, weights: none}",
        "data:",
        "  class_path: spml_lightning.data.FormattedDataModule",
        "  init_args:",
        f"    root: {init_args.pop('root', str(tiny_demo_root))}",
        f"    image_root: {tiny_demo_root / 'images'}",
    ] + [f"    {key}: {value}" for key, value in init_args.items()]
    path = tmp_path / "formatted.yaml"
    path.write_text("\n".join(lines) + "\n")
    return ["--config", str(path), "--trainer.default_root_dir", str(tmp_path / "runs")]


def yaml_with_unknown_key(tmp_path: Path) -> list[str]:
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  learning_rate: 0.1\n")
    return ["--config", str(path)]


def truncated_checkpoint(tmp_path: Path) -> list[str]:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    return ["--ckpt_path", str(path)]


#: (id, extra arguments (a function of tmp_path and the demo root), subcommand or None (instantiate
#: only), error type, message pattern). SystemExit is jsonargparse's "error: ..." with exit code 2;
#: its message goes to stderr.
# fmt: off
CONFIG_CASES = [
    ("unknown flag", lambda t, r: ["--model.no_such_knob", "1"], None, SystemExit, "no_such_knob"),
    ("unknown YAML key", lambda t, r: yaml_with_unknown_key(t), None, SystemExit, "learning_rate"),
    ("wrong type (int)", lambda t, r: ["--trainer.max_epochs", "three"],
     None, SystemExit, "max_epochs"),
    ("wrong type (data)", lambda t, r: ["--data.init_args.batch_size", "two"],
     None, SystemExit, "batch_size"),
    ("wrong choice", lambda t, r: ["--data.init_args.val_labels", "some"],
     None, SystemExit, "val_labels"),
    ("negative batch size", lambda t, r: ["--data.init_args.batch_size", "-4"],
     None, ValueError, "batch_size must be at least 1, got -4"),
    ("zero image size", lambda t, r: ["--data.init_args.image_size", "0"],
     None, ValueError, "image_size"),
    ("val fraction 1", lambda t, r: ["--data.init_args.val_fraction", "1.0"],
     None, ValueError, "val_fraction"),
    ("negative lr", lambda t, r: ["--model.lr", "-0.1"],
     None, ValueError, "lr and lr_mult must be finite positive numbers"),
    ("unknown backbone", lambda t, r: ["--model.backbone", "resnet19"],
     None, ValueError, "resnet19"),
    ("empty class list", lambda t, r: formatted_config(t, r, class_names="[]"),
     None, ValueError, "num_classes must be at least 1, got 0"),
    ("missing data folder", lambda t, r: formatted_config(t, r, root=str(t / "nowhere")),
     None, FileNotFoundError, "Cannot determine the classes"),
    ("endless schedule", lambda t, r: ["--trainer.max_epochs", "-1"],
     "fit", ValueError, "max_epochs -1: spml fit trains"),
    ("missing checkpoint", lambda t, r: ["--ckpt_path", str(t / "gone.ckpt")],
     "fit", FileNotFoundError, "no such checkpoint file"),
    ("truncated checkpoint", lambda t, r: truncated_checkpoint(t),
     "test", ValueError, "not a readable checkpoint"),
]
# fmt: on


@pytest.mark.parametrize(
    "make_args,subcommand,error,pattern",
    [c[1:] for c in CONFIG_CASES],
    ids=[c[0] for c in CONFIG_CASES],
)
def test_bad_configs(tmp_path, tiny_demo_root, capsys, make_args, subcommand, error, pattern):
    args = [*demo_args(tmp_path, tiny_demo_root), *make_args(tmp_path, tiny_demo_root)]
    with pytest.raises(error) as excinfo:
        run_cli([subcommand, *args] if subcommand else args, run=subcommand is not None)
    if error is SystemExit:
        assert excinfo.value.code == 2
        assert re.search(pattern, capsys.readouterr().err)
    else:
        assert re.search(pattern, str(excinfo.value)), str(excinfo.value)
        assert_not_from_torch(excinfo)
