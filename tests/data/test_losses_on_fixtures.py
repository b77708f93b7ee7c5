"""Every loss preset trains from the CLI on every benchmark fixture (slow: 80 short fits)."""

import math

import pytest
import yaml
from test_datamodules_cli import TINY, config_args

from spml_lightning.cli import run_cli

from community_reference import copy_fixture
from conftest import REPO_ROOT

#: One preset per loss (the VOC values); the _coco/_cub/_nuswide variants only change constants.
PRESETS = sorted(
    p
    for p in (REPO_ROOT / "configs" / "losses").glob("*.yaml")
    if not p.stem.endswith(("_coco", "_cub", "_nuswide"))
    # GPR and VLPL need a prior's scores: tests/priors/test_prior_fit.py trains them.
    and not p.stem.startswith(("gpr", "vlpl"))
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc", "coco", "cub", "nuswide", "folder"])
@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_loss_trains_on_every_fixture(name, preset, tmp_path):
    root = copy_fixture(name, tmp_path)
    args = [
        *config_args(name, root, tmp_path), "--config", str(preset), *TINY,
        # Two epochs, so epoch-dependent parts (LL rejection, SPLC, the APL pass) run too.
        "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1",
        "--trainer.default_root_dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    if "apl" in preset.stem:
        args += ["--model.loss.init_args.warmup_epochs", "1"]
    fit = run_cli(["fit", *args])
    assert fit.trainer.current_epoch == 2
    preset_class = yaml.safe_load(preset.read_text())["model"]["loss"]["class_path"]
    assert preset_class.rsplit(".", 1)[-1] == type(fit.model.loss).__name__
    assert math.isfinite(fit.trainer.callback_metrics["train/loss_epoch"].item())
    assert 0.0 <= fit.trainer.callback_metrics["val/mAP"].item() <= 100.0
