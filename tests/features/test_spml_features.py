"""`spml features`: the config's backbone and datamodule, the cache options, concurrent runs."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

from spml_lightning.cli import main, run_cli
from spml_lightning.features import MANIFEST, default_cache_dir, read_cache

from integration.helpers import describe, installed_spml, run
from probes import demo_args, subprocess_env


def test_spml_features_caches_the_configs_backbone(tiny_demo_root, tmp_path, info_lines):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    config = demo_args(tmp_path, root)
    args = [*config, "--cache.dtype", "float32", "--cache.flip", "true"]
    run_cli(["features", *args])
    # the default folder: in the data set's root, one per backbone
    cache_dir = default_cache_dir(
        root, {"class_path": "spml_lightning.backbones.SimpleConvNet", "init_args": {}}
    )
    assert cache_dir == root / ".spml_cache" / "features" / "SimpleConvNet"
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    fingerprint = manifest["fingerprint"]
    assert (fingerprint["dtype"], fingerprint["flip"], fingerprint["image_size"]) == (
        "float32",
        True,
        32,
    )
    assert fingerprint["mean"] == [0.485, 0.456, 0.406]  # the datamodule's resolved ones
    assert [record["shape"] for record in manifest["files"].values()] == [
        [64, 128],
        [64, 128],
        [16, 128],
        [16, 128],
        [40, 128],
        [40, 128],
    ]
    # the same config again: the same weights (seed_everything), so the cache is reused
    info_lines.clear()
    run_cli(["features", *args])
    assert any("same fingerprint, reusing" in line for line in info_lines)
    # the config's backbone, in eval mode, as a fit's model builds it
    fit = run_cli(config, run=False)
    fit.datamodule.setup("test")
    cached = read_cache(cache_dir, fingerprint)[0]
    assert cached is not None
    images = torch.stack([fit.datamodule.test_dataset[i]["image"] for i in range(4)])
    with torch.no_grad():
        expected = fit.model.backbone.eval()(images).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(cached.features("test")[:4], expected, rtol=0, atol=1e-6)


def test_a_bad_cache_option_is_a_usage_error(tiny_demo_root, tmp_path, capsys):
    status = main(["features", *demo_args(tmp_path, tiny_demo_root), "--cache.dtype", "float64"])
    assert status == 2
    error = capsys.readouterr().err
    assert "--cache.dtype" in error and "float32" in error and "float64" in error


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_concurrent_extractions_leave_one_valid_cache(tiny_demo_root, tmp_path):
    """Both start while the cache is locked; released together, one extracts, one reuses."""
    cache_dir = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "spml_lightning",
        "features",
        *demo_args(tmp_path, tiny_demo_root),
        "--cache.dir",
        str(cache_dir),
    ]
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    with open(tmp_path / "cache.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a third extraction would
        runs = [
            subprocess.Popen(
                command, env=subprocess_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT
            )
            for log in logs
        ]
        try:
            _wait_for(lambda: all("waiting for it" in log.read_text() for log in logs))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        for run in runs:
            run.wait(timeout=300)
    outputs = [log.read_text() for log in logs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = sorted(
        "reusing" if "same fingerprint, reusing" in out else "extracted" for out in outputs
    )
    assert said == ["extracted", "reusing"], outputs
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cache")) == [
        "cache",
        "cache.lock",
    ]
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    cached = read_cache(cache_dir, manifest["fingerprint"])[0]
    assert cached is not None and cached.features("train").shape == (64, 128)


def test_installed_spml_fits_on_cached_features_then_tests_on_images(tiny_demo_root, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(tiny_demo_root, root)
    flags = " ".join([*demo_args(tmp_path, root), "--model.train_mode", "linear_fixed_features"])
    spml = installed_spml()
    fit = f"{spml} fit {flags}"
    # spml features extracts what the fit then reuses; a second fit reuses it too
    commands = [f"{spml} features {flags}", fit, fit, f"{spml} test {flags} --ckpt_path best"]
    result = run(" && ".join(commands), cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    output = result.stdout + result.stderr
    said = [part.split("\n")[0] for part in output.split("Feature cache ")[1:]]
    assert len(said) == 3, said
    assert said[0].endswith("extracting the features: there is no cache yet.")
    assert all("same fingerprint, reusing the cached features" in line for line in said[1:]), said
    assert "test/mAP" in output
