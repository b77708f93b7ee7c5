"""Reading a sweep back from runs' logs: TensorBoard and CSV, config.yaml and hparams.yaml."""

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from spml_lightning.analysis.plots import plot_sweep
from spml_lightning.analysis.sweep import (
    collect_sweep,
    find_run_dirs,
    read_hyper_parameter,
    read_metric,
)

GR_PATH = "spml_lightning.losses.gr.GRLoss"


def log_run(logger, q2: float, test_map: float | None, val_maps=(50.0, 60.0, 55.0)) -> None:
    """A run as the spml module logs it: hparams with the loss, val mAP per epoch, test mAP."""
    logger.log_hyperparams(
        {
            "backbone": "resnet18",
            "loss": {
                "class_path": GR_PATH,
                "init_args": {"q2": q2, "q3": 1.0, "beta": [0.0, 2.0, -2.0, -2.0]},
            },
        }
    )
    for epoch, value in enumerate(val_maps):
        logger.log_metrics({"val/mAP": value}, step=epoch)
    if test_map is not None:
        logger.log_metrics({"test/mAP": test_map}, step=len(val_maps))
    logger.save()
    logger.finalize("success")


@pytest.mark.parametrize("logger_class", [TensorBoardLogger, CSVLogger])
def test_collect_sweep_from_logger_output(tmp_path, logger_class):
    expected = {0.01: 71.0, 0.05: 73.5, 0.5: 69.25}
    for q2, test_map in expected.items():
        log_run(logger_class(tmp_path, name="sweep"), q2, test_map)
    log_run(logger_class(tmp_path, name="sweep"), 0.2, None)  # a fit-only folder: not a point

    points = collect_sweep(tmp_path, "q2")
    assert [p.value for p in points] == sorted(expected)
    assert [p.metric for p in points] == pytest.approx([expected[q] for q in sorted(expected)])
    assert len(find_run_dirs(tmp_path)) == 4

    best_val = collect_sweep(tmp_path, "loss.init_args.q2", metric="val/mAP", reduce="max")
    assert {p.metric for p in best_val} == {60.0} and len(best_val) == 4
    last_val = read_metric(points[0].run_dir, "val/mAP")
    assert last_val == pytest.approx(55.0)

    figure = plot_sweep(points, "q2")
    assert len(figure.axes[0].collections[0].get_offsets()) == 3


def test_hyper_parameter_names(tmp_path):
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "trainer": {"max_epochs": 8},
                "model": {
                    "lr": 1e-5,
                    "loss": {
                        "class_path": GR_PATH,
                        "init_args": {
                            "q2": 0.05,
                            "seed": 1,
                            "beta": [0.0, 10.0, -2.0, -8.0],
                            "alpha": [0.5, 2.0, 0.8, 0.5],
                        },
                    },
                },
                "data": {"init_args": {"lr": 3, "seed": 2}},
            }
        )
    )
    assert read_hyper_parameter(run, "model.loss.init_args.q2") == 0.05
    assert read_hyper_parameter(run, "loss.init_args.q2") == 0.05
    assert read_hyper_parameter(run, "q2") == 0.05
    assert read_hyper_parameter(run, "beta.1") == 10.0
    assert read_hyper_parameter(run, "trainer.max_epochs") == 8
    assert read_hyper_parameter(run, "lr") == 1e-5  # a model key wins, as in hparams.yaml
    assert read_hyper_parameter(run, "data.init_args.lr") == 3
    with pytest.raises(KeyError, match="ambiguous"):
        read_hyper_parameter(run, "seed")
    with pytest.raises(ValueError, match="name one item"):
        read_hyper_parameter(run, "beta")
    with pytest.raises(KeyError, match="No hyper-parameter 'q9'"):
        read_hyper_parameter(run, "q9")


def test_runs_without_config_or_metric_are_explained(tmp_path):
    logger = CSVLogger(tmp_path, name="bare")
    logger.log_metrics({"test/mAP": 50.0}, step=0)
    logger.save()
    hparams = tmp_path / "bare" / "version_0" / "hparams.yaml"
    hparams.unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="hparams.yaml"):
        collect_sweep(tmp_path, "q2")
    with pytest.raises(ValueError, match="No run below"):
        collect_sweep(tmp_path, "q2", metric="test/other")
    with pytest.raises(FileNotFoundError, match="No folder"):
        collect_sweep(tmp_path / "missing", "q2")


def test_sweep_of_a_real_run(tiny_run):
    (point,) = collect_sweep(tiny_run["runs"], "q2")
    assert point.value == 0.01
    assert point.metric == pytest.approx(tiny_run["test_map"])


def test_values_sort_numerically_whatever_their_type(tmp_path):
    for q3, test_map in ((1, 70.0), (0.5, 68.0), (1.5, 71.0)):  # YAML gives an int for 1
        logger = CSVLogger(tmp_path, name="q3")
        logger.log_hyperparams({"loss": {"init_args": {"q3": q3}}})
        logger.log_metrics({"test/mAP": test_map}, step=0)
        logger.save()
    points = collect_sweep(tmp_path, "q3")
    assert [p.value for p in points] == [0.5, 1, 1.5]
    assert [p.metric for p in points] == [68.0, 70.0, 71.0]
