"""The open_clip prior on a tiny random model: views, cache reuse and recompute, no network.

No weights are downloaded: the model is an open_clip config of a few thousand weights
(``tiny_clip_config``), built with random weights from a seed, or from a local file.
"""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from prior_files import TINY_CLIP, tiny_demo, training_set

from spml_lightning.features import SharedExtraction
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


def test_random_weights_leave_the_trainings_random_stream_alone(tmp_path, tiny_clip_config):
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    provider(tiny_clip_config, tmp_path / "c").load(["cat", "dog"], torch.device("cpu"))
    assert torch.equal(torch.rand(4), expected)  # seed_everything's stream, not the prior's seed


class _Meeting:
    """Two threads standing in for two DDP ranks: a barrier and rank 0's broadcast."""

    def __init__(self, processes: int) -> None:
        self._barrier = threading.Barrier(processes, timeout=120)
        self._value = None

    def shared(self, rank: int, processes: int) -> SharedExtraction:
        def broadcast(value):
            if rank == 0:
                self._value = value
            self._barrier.wait()
            told = self._value
            self._barrier.wait()  # every rank has read it before it can change
            return told

        return SharedExtraction(rank, processes, self._barrier.wait, broadcast)


def test_ddp_ranks_each_score_a_share_and_rank_0_writes_the_cache_of_one_process(
    tmp_path, tiny_demo_root, tiny_clip_config, no_network, info_lines
):
    datamodule, dataset = training_set(tiny_demo_root)
    paths, names = dataset.image_paths, datamodule.class_names
    alone, _ = provider(tiny_clip_config, tmp_path / "alone").scores(paths, names, tiny_demo_root)
    meeting, got, scored, loading = _Meeting(2), {}, {}, threading.Lock()

    def rank(number: int) -> None:
        ranked = provider(tiny_clip_config, tmp_path / "shared")
        # Threads share torch's generator (processes do not): one seeded build at a time.
        load, real = ranked.load, ranked._score_all
        ranked.load = lambda *args: [loading.acquire(), load(*args), loading.release()][1]
        # Which images each process scores: its share only.
        ranked._score_all = lambda scorer, images, *arrays: (
            scored.setdefault(number, list(images)),
            real(scorer, images, *arrays),
        )
        got[number] = ranked.scores(paths, names, tiny_demo_root, meeting.shared(number, 2))

    threads = [threading.Thread(target=rank, args=(number,)) for number in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(got) == [0, 1], "a rank failed (its error is printed above)"
    assert scored == {0: list(paths[0::2]), 1: list(paths[1::2])}
    for scores, _ in got.values():
        np.testing.assert_allclose(scores.views, alone.views, rtol=0, atol=1e-5)
        np.testing.assert_allclose(scores.flipped, alone.flipped, rtol=0, atol=1e-5)
    assert "computed" in got[0][1] and "reused" in got[1][1]
    assert any("2 processes share the scoring" in line for line in info_lines), info_lines
    assert not list(tmp_path.glob("*.shards-*"))  # rank 0 removed the shares
    # A valid cache: every rank reuses it, nobody scores.
    scored.clear()
    threads = [threading.Thread(target=rank, args=(number,)) for number in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert scored == {} and all("reused" in how for _, how in got.values())


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
