"""The open_clip prior on a tiny random model: views, cache reuse and recompute, no network.

No weights are downloaded: the model is an open_clip config of a few thousand weights
(``tiny_clip_config``), built with random weights from a seed, or from a local file.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image
from prior_files import TINY_CLIP, tiny_demo, training_set

from spml_lightning.priors import OpenCLIPPrior, PseudoLabelPolicy
from spml_lightning.priors.provider import image_views

pytest.importorskip("open_clip")


@pytest.fixture
def tiny_clip_config(tmp_path):
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP))
    return str(path)


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def provider(config: str, cache, **kwargs) -> OpenCLIPPrior:
    options = dict(model="tiny-clip", pretrained=None, model_config=config, grid=2)
    options.update(kwargs)
    return OpenCLIPPrior(cache_dir=str(cache), device="cpu", progress=False, **options)


def test_views_are_the_whole_image_then_the_grid_row_by_row():
    image = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    views = image_views(image, 2, 8)
    assert len(views) == 5 and all(v.size == (8, 8) for v in views)
    top_right = image.crop((8, 0, 16, 8)).resize((8, 8), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(np.asarray(views[2]), np.asarray(top_right))
    assert len(image_views(image, 0, 8)) == 1


def test_scores_are_computed_once_then_reused_and_recomputed_with_the_reason(
    tmp_path, tiny_demo_root, tiny_clip_config, no_network, info_lines
):
    datamodule, dataset = training_set(tiny_demo_root)
    paths, names = dataset.image_paths, datamodule.class_names
    first, _ = provider(tiny_clip_config, tmp_path / "c").scores(paths, names, tiny_demo_root)
    assert first.views.shape == (len(paths), 5, len(names)) and first.grid == 2
    assert first.flipped is not None and not np.allclose(first.views, first.flipped)
    assert np.abs(first.views).max() <= 1.0 + 1e-5  # cosine similarities
    again, how = provider(tiny_clip_config, tmp_path / "c").scores(paths, names, tiny_demo_root)
    assert "reused" in how and any("reusing the cached prior scores" in x for x in info_lines)
    np.testing.assert_array_equal(first.views, again.views)
    changes = [
        (dict(templates=["a drawing of a {}."]), "the provider differ"),
        (dict(grid=3), "grid"),
        (dict(flip=False), "flip"),
    ]
    for change, reason in changes:
        info_lines.clear()
        provider(tiny_clip_config, tmp_path / "c", **change).scores(paths, names, tiny_demo_root)
        assert any("computing the prior scores" in x and reason in x for x in info_lines), (
            change,
            info_lines,
        )
    info_lines.clear()
    provider(tiny_clip_config, tmp_path / "c").scores(paths[:-1], names, tiny_demo_root)
    assert any("images (train) differ" in x for x in info_lines), info_lines


def test_a_local_weights_file_gives_the_scores_of_those_weights(
    tmp_path, tiny_demo_root, tiny_clip_config, no_network
):
    import open_clip

    datamodule, dataset = training_set(tiny_demo_root)
    paths, names = dataset.image_paths[:4], datamodule.class_names
    random_prior = provider(tiny_clip_config, tmp_path / "a", seed=3, flip=False)
    expected, _ = random_prior.scores(paths, names, tiny_demo_root)
    open_clip.add_model_config(tiny_clip_config)
    torch.manual_seed(3)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    weights = str(tmp_path / "tiny.pt")
    from_file = provider(tiny_clip_config, tmp_path / "b", pretrained=weights, flip=False)
    got, _ = from_file.scores(paths, names, tiny_demo_root)
    np.testing.assert_allclose(got.views, expected.views, atol=1e-5)


def test_the_datamodule_serves_the_providers_pseudo_positives(
    tmp_path, tiny_demo_root, tiny_clip_config, no_network
):
    policy = PseudoLabelPolicy(kind="aevlp", threshold=0.0, k=3, temperature=0.01, eta=0.3)
    datamodule = tiny_demo(
        tiny_demo_root,
        prior_provider=provider(tiny_clip_config, tmp_path / "c"),
        prior_policy=policy,
    )
    datamodule.setup("fit")
    pseudo = datamodule.train_dataset.extras["pseudo_positive"]
    assert pseudo.shape == datamodule.train_dataset.targets.shape
    # Threshold 0 and k = 3: three proposals per image, the observed positive perhaps one.
    assert (pseudo.sum(axis=1) >= 2).all() and (pseudo.sum(axis=1) <= 3).all()


def test_none_as_text_means_random_weights_as_for_model_weights():
    for text in ("none", "None", "null"):
        assert OpenCLIPPrior(pretrained=text).pretrained is None
    assert OpenCLIPPrior(pretrained="openai").pretrained == "openai"


def test_bad_provider_arguments_are_refused(tiny_clip_config):
    with pytest.raises(ValueError, match="templates"):
        OpenCLIPPrior(templates=["a photo"])
    with pytest.raises(ValueError, match="grid"):
        OpenCLIPPrior(grid=1)
