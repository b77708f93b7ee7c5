"""The predictor runs where torch cannot be imported, and labels as `spml predict` does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from spml_lightning.cli import main

from conftest import REPO_ROOT
from probes import write_torch_blocker

#: Prints the labels of the images, and which blocked modules got imported (none may).
SCRIPT = textwrap.dedent(
    """
    import json, sys
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch imported: the blocker is not in place")
    from spml_lightning.deploy import Predictor

    predictions = Predictor(sys.argv[1]).predict(sys.argv[2:])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning"))
    print(json.dumps({"labels": [p.labels for p in predictions], "imported": heavy}))
    """
)


def test_the_predictor_labels_without_torch_as_spml_predict_does(
    tiny_run, tiny_demo_root, tmp_path
):
    model = tmp_path / "model.onnx"
    # `spml predict` calls a label at probability >= 0.5: the file's thresholds are 0.5 too.
    flags = ["--ckpt_path", "best", "--threshold", "0.5", "--output", str(model)]
    assert main(["export", *tiny_run["args"], *flags]) == 0
    images = sorted((tiny_demo_root / "images" / "test").iterdir())[:8]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{path}\n" for path in images))
    out = tmp_path / "predictions.json"
    predict = ["predict", *tiny_run["args"], "--ckpt_path", str(tiny_run["best"])]
    predict += ["--data", "spml_lightning.data.UnlabelledImageDataModule"]
    predict += ["--data.init_args.root", str(listing), "--prediction.output_path", str(out)]
    assert main(predict) == 0
    expected = [record["labels"] for record in json.loads(out.read_text())]
    assert any(expected), "no label at all: the comparison would be empty"

    blocker = write_torch_blocker(tmp_path / "blocker")
    env = {"PYTHONPATH": f"{blocker}:{REPO_ROOT}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), *map(str, images)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer == {"labels": expected, "imported": []}
