"""The spml command end to end: fit -> test -> predict on the demo config."""

import sys
import warnings

import pytest
import torch

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli

from probes import demo_args


def test_fit_test_predict_then_reload(tmp_path, tiny_demo_root):
    args = demo_args(tmp_path, tiny_demo_root)
    fit = run_cli(["fit", *args])
    best = fit.trainer.checkpoint_callback.best_model_path
    assert best and fit.trainer.current_epoch == 2
    assert "schedule/w" in fit.trainer.callback_metrics

    # A fresh CLI process state: "best" is found on disk, not in memory.
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    assert test.trainer.ckpt_path == best
    test_map = test.trainer.callback_metrics["test/mAP"].item()
    assert 0.0 < test_map <= 100.0

    predict = run_cli(["predict", *args, "--ckpt_path", "last"])
    assert predict.trainer.ckpt_path.endswith("last.ckpt")

    model = SPMLModule.load_from_checkpoint(best, map_location="cpu")
    assert model.hparams.num_classes == 14 and len(model.class_names) == 14
    images = test.datamodule.test_dataset.image_paths[:3]
    probs = model.predict_images(images)
    assert probs.shape == (3, 14) and torch.isfinite(probs).all()


def test_print_config_lists_the_knobs(tmp_path, tiny_demo_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", *demo_args(tmp_path, tiny_demo_root), "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for knob in ("q2:", "linear_init:", "SimpleConvNet", "max_drop:", "monitor: val/mAP"):
        assert knob in printed


def test_missing_checkpoint_is_explained(tmp_path, tiny_demo_root):
    with pytest.raises(FileNotFoundError, match="Run `spml fit`"):
        run_cli(["test", *demo_args(tmp_path, tiny_demo_root), "--ckpt_path", "best"])


def test_bad_hyper_parameter_names_the_parameter(tmp_path, tiny_demo_root):
    with pytest.raises(ValueError, match="q2"):
        run_cli(["fit", *demo_args(tmp_path, tiny_demo_root), "--model.loss.init_args.q2", "-1"])


def test_spml_test_prints_the_f1_metrics(tiny_run, capsys):
    capsys.readouterr()
    args = [*tiny_run["args"], "--ckpt_path", str(tiny_run["best"])]
    run_cli(["test", *args])
    printed = capsys.readouterr().out
    for name in ("test/mAP", "test/OP", "test/OF1", "test/CF1", "test/top3/OR", "test/top3/CF1"):
        assert name in printed, name
    # A model trained with every image is tested without the label-less ones: no refusal (the
    # demo has none, so the numbers are the same).
    excluded = run_cli(["test", *args, "--data.init_args.eval_label_less", "exclude"])
    assert excluded.datamodule.eval_label_less == "exclude"
    assert excluded.datamodule.label_less_images == {"test": 0}
    results = excluded.trainer.callback_metrics
    assert results["test/top3/OF1"].item() == tiny_run["test_results"]["test/top3/OF1"]


def test_run_cli_takes_its_args_without_warning_about_the_caller_s_argv(
    tmp_path, tiny_demo_root, monkeypatch
):
    # A bench script or notebook passes spml's command line as args; its own flags in
    # sys.argv are not spml's, and LightningCLI's "both args and sys.argv" warning is noise.
    monkeypatch.setattr(sys, "argv", ["profile_accuracy.py", "--seeds", "0", "1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_cli(demo_args(tmp_path, tiny_demo_root), run=False)
    assert cli.datamodule.batch_size > 0  # parsed from args, not from sys.argv
    assert not [w for w in caught if "args parameter" in str(w.message)], caught
