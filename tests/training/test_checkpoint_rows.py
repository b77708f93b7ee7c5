"""Every reader of a checkpoint whose output depends on its training rows refuses other rows.

The one check is ``SPMLDataModule.check_same_rows``; a resumed fit
(tests/training/test_resume.py), ``spml suggest`` (test_suggest.py), ``load_run``,
``analyze`` (tests/analysis/test_analyze.py) and the report (test_report.py) have
their tests beside theirs. Here: ``spml validate``, and ``spml test``, whose
output the training rows do not change. Also: a resume compares the recorded
backbone as a class (training/resuming.py).
"""

from __future__ import annotations

from spml_lightning.cli import main


def test_validate_refuses_other_val_rows(tiny_run, tmp_path, capsys):
    args = [
        "validate", *tiny_run["args"], "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--ckpt_path", str(tiny_run["best"]),
    ]  # fmt: skip
    assert main([*args, "--data.init_args.split_seed", "7"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "The val rows of DemoDataModule differ from those the checkpoint" in err, err
    assert "some the model trained on" in err and "split_seed" in err
    assert main(args) == 0  # the run's own rows


def test_test_accepts_another_split_its_test_set_is_the_same(tiny_run, tmp_path):
    args = [
        "test", *tiny_run["args"], "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--ckpt_path", str(tiny_run["best"]), "--data.init_args.split_seed", "7",
    ]  # fmt: skip
    assert main(args) == 0


def test_a_resume_compares_backbones_as_classes_not_as_strings():
    from spml_lightning.training.resuming import resume_plan

    path = "spml_lightning.backbones.SimpleConvNet"
    recorded = {"class_path": path, "init_args": {"widths": [8]}}
    same = {**recorded, "class_path": "spml_lightning.backbones.simple.SimpleConvNet"}
    assert resume_plan({"backbone": recorded}, {"backbone": same}).refused == []
    wider = {**recorded, "init_args": {"widths": [16]}}
    assert resume_plan({"backbone": recorded}, {"backbone": wider}).refused == [
        "backbone: spml_lightning.backbones.SimpleConvNet: widths [8] -> [16] (checkpoint -> now)"
    ]
