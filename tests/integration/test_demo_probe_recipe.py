"""The guide's recipe for a meaningful demo probe, run as written through the installed spml."""

from __future__ import annotations

import json

import torch

from spml_lightning import SPMLModule
from spml_lightning.features import weights_digest

from conftest import REPO_ROOT
from integration.helpers import describe, installed_spml, link_repo_files, run
from integration.test_readme import code_blocks, section
from probes import TINY_DEMO_FLAGS

GUIDE = (REPO_ROOT / "docs" / "guides" / "cached-features.md").read_text()


def test_the_demo_probe_recipe_trains_a_backbone_then_probes_its_features(tmp_path):
    (block,) = code_blocks(section("A meaningful probe on the demo", GUIDE), "bash")
    installed_spml()
    link_repo_files(tmp_path, "configs")
    prelude = f'set -e\nspml() {{ command spml "$@" {" ".join(TINY_DEMO_FLAGS)}; }}\n'
    result = run(prelude + block, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, describe(result)
    assert "test/mAP" in result.stdout + result.stderr, describe(result)
    # the backbone trained on the other draw's images, with full labels ...
    (backbone_ckpt,) = (tmp_path / "runs" / "demo-backbone").rglob("last.ckpt")
    backbone = torch.load(backbone_ckpt, map_location="cpu", weights_only=False)
    assert backbone["hyper_parameters"]["loss"]["class_path"].endswith("FullLabelLoss")
    assert (tmp_path / "data" / "demo-seed1" / "class_names.txt").is_file()
    # ... is the probe's frozen backbone, and the features it cached are that backbone's
    (probe_ckpt,) = (tmp_path / "runs" / "demo-probe").rglob("last.ckpt")
    probe = torch.load(probe_ckpt, map_location="cpu", weights_only=False)
    assert probe["hyper_parameters"]["train_mode"] == "linear_fixed_features"
    for name, value in backbone["state_dict"].items():
        if name.startswith("backbone."):
            assert torch.equal(probe["state_dict"][name], value), name
    (manifest,) = (tmp_path / "data" / "demo" / ".spml_cache").rglob("manifest.json")
    cached_with = json.loads(manifest.read_text())["fingerprint"]["weights"]
    assert cached_with == weights_digest(SPMLModule.load_from_checkpoint(backbone_ckpt).backbone)
