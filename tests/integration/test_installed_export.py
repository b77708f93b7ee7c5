"""The installed ``spml``: fit, export to ONNX, then label a demo image in Python without torch."""

from __future__ import annotations

import json
import shlex

import onnx

from spml_lightning.deploy import ModelMetadata

from integration.helpers import describe, installed_spml, link_repo_files, run
from probes import TINY_DEMO_FLAGS, write_torch_blocker

#: The predictor in a `python -c`, as a user without torch would run it.
LABEL = (
    "import json, sys; from spml_lightning.deploy import Predictor; "
    "(p,) = Predictor('model.onnx').predict([sys.argv[1]]); "
    "print(json.dumps({'labels': p.labels, 'torch': 'torch' in sys.modules}))"
)


def test_fit_export_and_a_torch_free_prediction_through_the_installed_command(
    tmp_path, tiny_demo_root
):
    spml = installed_spml()
    link_repo_files(tmp_path, "configs")
    write_torch_blocker(tmp_path / "blocker")
    flags = " ".join(
        shlex.quote(flag)
        for flag in [
            "--config", "configs/demo.yaml", *TINY_DEMO_FLAGS,
            "--data.init_args.root", str(tiny_demo_root),
            "--trainer.enable_progress_bar", "false",
        ]
    )  # fmt: skip
    image = sorted((tiny_demo_root / "images" / "test").iterdir())[0]
    chain = (
        f"{spml} fit {flags} && "
        f"{spml} export {flags} --ckpt_path best --format onnx --output model.onnx && "
        f"PYTHONPATH=blocker python -c {shlex.quote(LABEL)} {image}"
    )
    result = run(chain, cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    assert "Exported" in result.stdout + result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    properties = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    classes = ModelMetadata.from_properties(properties).class_names
    assert answer["torch"] is False and len(classes) == 14
    assert answer["labels"] and set(answer["labels"]) <= set(classes)
