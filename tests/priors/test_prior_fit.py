"""GPR and VLPL through the installed ``spml``: fit with a prior, then test the best checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prior_files import TINY_CLIP, tiny_clip_flags, write_scores_csv

from spml_lightning.cli import run_cli

from integration.helpers import describe, installed_spml, run
from probes import demo_args, run_ddp_driver


def test_gpr_with_a_scores_csv_fits_and_tests_with_exit_0(tmp_path, tiny_demo_root):
    scores, _ = write_scores_csv(tmp_path / "scores.csv", tiny_demo_root)
    spml = installed_spml()
    flags = " ".join(demo_args(tmp_path, tiny_demo_root))
    prior = f"--model.loss GPR --data.init_args.prior {scores}"
    result = run(
        f"{spml} fit {flags} {prior} && {spml} test {flags} {prior} --ckpt_path best", tmp_path
    )
    assert result.returncode == 0, describe(result)
    output = result.stdout + result.stderr
    assert "test/mAP" in output
    # The prior's quality is told before training.
    assert "Prior " in output and "mAP of its scores" in output and "pseudo-positives" in output


def test_vlpl_with_the_tiny_open_clip_prior_fits_and_tests_with_exit_0(tmp_path, tiny_demo_root):
    pytest.importorskip("open_clip")
    (tmp_path / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    config = tmp_path / "prior.yaml"
    config.write_text(
        "data:\n  init_args:\n    prior_provider:\n"
        "      class_path: spml_lightning.priors.OpenCLIPPrior\n      init_args:\n"
        f"        model: tiny-clip\n        pretrained: null\n"
        f"        model_config: {tmp_path / 'tiny-clip.json'}\n        grid: 2\n"
        f"        cache_dir: {tmp_path / 'prior-cache'}\n        device: cpu\n"
        "    prior_policy: {kind: vlpl, threshold: 0.1, temperature: 0.01}\n"
    )
    spml = installed_spml()
    flags = " ".join([*demo_args(tmp_path, tiny_demo_root), "--config", str(config)])
    # HF_HUB_OFFLINE: open_clip must not try to download anything.
    result = run(
        f"export HF_HUB_OFFLINE=1; {spml} fit {flags} --model.loss VLPL && "
        f"{spml} test {flags} --model.loss VLPL --ckpt_path best",
        tmp_path,
    )
    assert result.returncode == 0, describe(result)
    output = result.stdout + result.stderr
    assert "computing the prior scores" in output


def test_two_process_ddp_shares_the_prior_scoring_and_writes_one_processs_cache(
    tmp_path, tiny_demo_root
):
    pytest.importorskip("open_clip")
    provider = tiny_clip_flags(tmp_path)
    cache = tmp_path / "prior-cache"
    args = [
        *demo_args(tmp_path, tiny_demo_root), *provider, "--model.loss", "GPR",
        "--data.init_args.prior_provider.cache_dir", str(cache),
        "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
        "--trainer.num_sanity_val_steps", "0",
    ]  # fmt: skip
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    result = run_ddp_driver(tmp_path, [*args, *ddp])
    output = result.stdout + result.stderr
    # fit scores (rank 0 says so once); validate and test reuse the cache
    assert output.count("2 processes share the scoring") == 1, output[-3000:]
    assert "reusing the cached prior scores" in output
    assert not list(tmp_path.glob("*.shards-*"))
    # The shares are interleaved into each image's row: one process scores the same.
    alone = run_cli([*args, "--data.init_args.prior_provider.cache_dir", str(tmp_path / "alone")],
                    run=False)  # fmt: skip
    alone.datamodule.setup("fit")
    for name in ("train", "train.flipped"):
        np.testing.assert_allclose(
            np.load(cache / f"{name}.npy"),
            np.load(tmp_path / "alone" / f"{name}.npy"),
            rtol=0,
            atol=1e-5,
        )


def test_a_prior_loss_without_a_prior_stops_before_training(tmp_path, tiny_demo_root):
    result = run([str(installed_spml()), "fit", *demo_args(tmp_path, tiny_demo_root),
                  "--model.loss", "GPR"], tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "GPRLoss learns from pseudo_positive" in result.stderr
    assert "data.init_args.prior" in result.stderr
    # Refused when the fit is set up: before the model summary that starts training.
    assert "Total params" not in result.stdout + result.stderr
