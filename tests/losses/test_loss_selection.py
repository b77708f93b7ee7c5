"""The one switch: registry names, class names and stackable presets on the spml CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spml_lightning import SPMLModule
from spml_lightning.cli import run_cli
from spml_lightning.losses import (
    LOSSES,
    AssumeNegativeLoss,
    AsymmetricPseudoLabelLoss,
    EntropyMaximizationLoss,
    GRLoss,
    OnlineLabelEstimationLoss,
    loss_from_config,
)

from conftest import REPO_ROOT
from probes import demo_args

DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
PRESETS = sorted((REPO_ROOT / "configs" / "losses").glob("*.yaml"))

# The values each preset must carry: the (per-dataset) settings of each loss's paper (AN-LS, EPR,
# ROLE: Cole et al., CVPR 2021; EM, EM+APL: Zhou et al., ECCV 2022; LL: Kim et al., CVPR 2022;
# Hill, SPLC: Zhang et al., arXiv:2112.07368; Focal: Lin et al., ICCV 2017; ASL: Ridnik et al.,
# ICCV 2021). GR: the published code's defaults (VOC); for COCO, NUS-WIDE and CUB the
# β = (0, 10, -2, -8) and CUB q3 = 1.5 that later work on that code uses, as starting points.
PUBLISHED_VALUES = {
    "an_ls": {"smoothing": 0.1},
    "epr": {"expected_positives": 1.5},
    "epr_coco": {"expected_positives": 2.9},
    "epr_nuswide": {"expected_positives": 1.9},
    "epr_cub": {"expected_positives": 31.4},
    "role": {"expected_positives": 1.5, "lr_mult": 10.0},
    "role_coco": {"expected_positives": 2.9, "lr_mult": 10.0},
    "role_nuswide": {"expected_positives": 1.9, "lr_mult": 10.0},
    "role_cub": {"expected_positives": 31.4, "lr_mult": 10.0},
    "em": {"alpha": 0.2},
    "em_coco": {"alpha": 0.1},
    "em_nuswide": {"alpha": 0.1},
    "em_cub": {"alpha": 0.01},
    "em_apl": {"alpha": 0.2, "beta": 0.02, "warmup_epochs": 5, "neg_proportion": 0.9},
    "em_apl_coco": {"alpha": 0.1, "beta": 0.9, "warmup_epochs": 5, "neg_proportion": 0.9},
    "em_apl_nuswide": {"alpha": 0.1, "beta": 0.2, "warmup_epochs": 4, "neg_proportion": 0.9},
    "em_apl_cub": {"alpha": 0.01, "beta": 0.4, "warmup_epochs": 3, "neg_proportion": 0.9},
    "ll_r": {"delta": 0.005},
    "ll_ct": {"delta": 0.002},
    "ll_cp": {"delta": 0.001},
    "hill": {"lam": 1.5, "margin": 1.0, "gamma": 2.0},
    "splc": {"tau": 0.6, "start_epoch": 1, "margin": 1.0, "gamma": 2.0},
    "focal": {"gamma": 2.0},
    "asl": {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05},
    "gr": {"beta": [0, 2, -2, -2], "alpha": [0.5, 2, 0.8, 0.5], "q2": 0.01, "q3": 1.0},
    "gr_coco": {"beta": [0, 10, -2, -8], "alpha": [0.5, 2, 0.8, 0.5], "q2": 0.01, "q3": 1.0},
    "gr_nuswide": {"beta": [0, 10, -2, -8], "alpha": [0.5, 2, 0.8, 0.5], "q2": 0.01, "q3": 1.0},
    "gr_cub": {"beta": [0, 10, -2, -8], "alpha": [0.5, 2, 0.8, 0.5], "q2": 0.01, "q3": 1.5},
    # GPR: AEVLP (Tran et al., ICCV 2025); VLPL: Xing et al., CVPR-W 2024 (its EM alpha: EM's).
    "gpr": {"beta": [0, 2, -2, -2], "q3": 1.0, "lambda1": 0.7, "lambda2": 0.4, "rho": 0.9,
            "reg": 0.05, "expected_positives": 1.5},
    "gpr_coco": {"beta": [0, 10, -2, -8], "q3": 1.0, "lambda1": 0.7, "lambda2": 0.5,
                 "reg": 0.001, "expected_positives": 2.9},
    "gpr_nuswide": {"beta": [0, 10, -2, -8], "q3": 1.0, "lambda1": 0.7, "lambda2": 0.5,
                    "reg": 0.001, "expected_positives": 1.9},
    "gpr_cub": {"beta": [0, 10, -2, -8], "q3": 1.5, "lambda1": 0.8, "lambda2": 0.2,
                "reg": 0.01, "expected_positives": 31.4},
    "vlpl": {"alpha": 0.2, "beta_pos": 0.7, "rho": 0.9},
    "vlpl_coco": {"alpha": 0.1, "beta_pos": 0.7, "rho": 0.9},
    "vlpl_nuswide": {"alpha": 0.1, "beta_pos": 0.7, "rho": 0.9},
    "vlpl_cub": {"alpha": 0.01, "beta_pos": 0.7, "rho": 0.9},
}  # fmt: skip

# The pseudo-labelling rule each prior-based preset carries (AEVLP's DAMP per data set;
# VLPL's softmax threshold).
PUBLISHED_POLICIES = {
    "gpr": {"kind": "aevlp", "temperature": 0.01, "eta": 0.0, "threshold": 0.5, "k": 3},
    "gpr_coco": {"kind": "aevlp", "temperature": 0.01, "eta": 0.3, "threshold": 0.5, "k": 3},
    "gpr_nuswide": {"kind": "aevlp", "temperature": 0.01, "eta": 0.3, "threshold": 0.6, "k": 3},
    "gpr_cub": {"kind": "aevlp", "temperature": 0.1, "eta": 0.005, "threshold": 0.005, "k": 32},
    "vlpl": {"kind": "vlpl", "threshold": 0.3},
}


def test_the_prior_presets_carry_the_published_pseudo_labelling_rule():
    for stem, values in PUBLISHED_POLICIES.items():
        config = yaml.safe_load((REPO_ROOT / "configs" / "losses" / f"{stem}.yaml").read_text())
        policy = config["data"]["init_args"]["prior_policy"]
        for key, value in values.items():
            assert policy[key] == pytest.approx(value), (stem, key)


@pytest.fixture(scope="module")
def parser(tmp_path_factory):
    """The spml parser (no subcommand), built once: parsing alone is cheap."""
    root = str(tmp_path_factory.mktemp("runs"))
    cli = run_cli(["--config", DEMO, "--trainer.default_root_dir", root], run=False)
    return cli.parser


def preset_loss(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["model"]["loss"]


def test_there_is_a_preset_for_every_loss_with_the_published_values():
    classes = {preset_loss(p)["class_path"].rsplit(".", 1)[1] for p in PRESETS}
    assert classes == {cls.__name__ for cls in LOSSES.values()}
    for stem, values in PUBLISHED_VALUES.items():
        init_args = preset_loss(REPO_ROOT / "configs" / "losses" / f"{stem}.yaml")["init_args"]
        for key, value in values.items():
            assert init_args[key] == pytest.approx(value), (stem, key)


def test_the_benchmark_finds_the_preset_of_every_registry_name(bench_module):
    bench = bench_module("compare_losses")
    for name, cls in LOSSES.items():
        assert preset_loss(bench.preset_for(name))["class_path"].endswith(f".{cls.__name__}"), name
    # APL's warm-up (5 of the paper's 8 epochs) keeps its share of a run of another length.
    warmup = lambda epochs: bench.loss_arguments("EM+APL", epochs)[-2:]  # noqa: E731
    assert warmup(4) == ["--model.loss.init_args.warmup_epochs", "2"]
    assert warmup(6) == ["--model.loss.init_args.warmup_epochs", "4"]
    assert warmup(12) == ["--model.loss.init_args.warmup_epochs", "8"]
    # At least one epoch before, and one after.
    assert warmup(2) == ["--model.loss.init_args.warmup_epochs", "1"]
    assert bench.loss_arguments("EM+APL", 8) == ["--config", str(bench.preset_for("EM+APL"))]
    assert bench.loss_arguments("EM", 6) == ["--config", str(bench.preset_for("EM"))]


def test_the_benchmark_table_reports_mean_std_and_each_seed_in_registry_order(bench_module):
    records = [  # written out of order, as a resumed comparison appends them
        {"loss": "GR", "seed": 1, "epochs": 12, "test_map": 62.0},
        {"loss": "AN", "seed": 0, "epochs": 12, "test_map": 56.0},
        {"loss": "GR", "seed": 0, "epochs": 12, "test_map": 61.0},
        {"loss": "GR", "seed": 2, "epochs": 12, "test_map": 57.0},
    ]
    lines = bench_module("compare_losses").table(records, ["full", "AN", "GR"]).splitlines()
    assert len(lines) == 4  # header, rule, AN, GR: a loss without runs has no row
    assert lines[2] == "| AN | 56.00 ± 0.00 | 56.00 | 0 | 12 |"
    # mean 60, sample std sqrt(((1)^2 + (2)^2 + (3)^2) / 2) = sqrt(7) = 2.65; values in seed order
    assert lines[3] == "| GR | 60.00 ± 2.65 | 61.00 / 62.00 / 57.00 | 0, 1, 2 | 12 |"


def test_the_benchmark_table_separates_training_seeds_from_observation_draws(bench_module):
    bench = bench_module("compare_losses")
    records = [
        {"loss": "GR", "seed": s, "observe_seed": d, "observe": "size", "epochs": 2, "test_map": v}
        for s, d, v in ((0, 10, 60.0), (0, 11, 62.0), (1, 10, 64.0), (1, 11, 66.0))
    ]
    lines = bench.table(records, ["AN", "GR"]).splitlines()
    assert len(lines) == 3 and "std over observation draws" in lines[0]
    # All four: mean 63, std sqrt((9 + 1 + 1 + 9) / 3) = 2.58. Seed means 61 and 65: std
    # sqrt(8) = 2.83. Draw means 62 and 64: std sqrt(2) = 1.41.
    assert lines[2] == "| GR | size | 63.00 ± 2.58 | 2.83 | 1.41 | 0, 1 | 10, 11 | 2 |"
    # One draw (or records from before --observe_seeds): the table as it was.
    assert (
        bench.table(records[:1], ["GR"]).splitlines()[2] == "| GR | 60.00 ± 0.00 | 60.00 | 0 | 2 |"
    )


def test_the_benchmark_passes_the_observation_to_each_run(bench_module):
    bench = bench_module("compare_losses")
    assert bench.observation_arguments(None, None) == []
    assert bench.observation_arguments("frequency", 7) == [
        "--data.init_args.observe", "frequency", "--data.init_args.observe_seed", "7",
    ]  # fmt: skip
    assert bench.run_name("GR", 1, None, None) == "gr-1"  # the folder of the runs before
    assert bench.run_name("GR", 1, "size", 7) == "gr-1-size-draw7"
    # Resuming tells draws apart; records from before --observe are the config's observation.
    old = {"loss": "GR", "seed": 1, "epochs": 2}
    assert bench.key(old) == ("GR", 1, None, None, 2)
    assert bench.key({**old, "observe": "size", "observe_seed": 7}) == ("GR", 1, "size", 7, 2)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_each_preset_stacks_on_the_demo_config_without_stale_arguments(parser, preset):
    # demo.yaml configures GRLoss (beta, alpha, q2, q3); none of it may leak into another loss.
    config = parser.parse_args(["--config", DEMO, "--config", str(preset)])
    parsed = config.model.loss
    wanted = preset_loss(preset)
    assert parsed.class_path == wanted["class_path"]
    init_args = dict(parsed.get("init_args") or {})
    assert_same_arguments(init_args, wanted.get("init_args", {}))
    loss = loss_from_config({"class_path": parsed.class_path, "init_args": init_args})
    assert_same_arguments(loss.init_args, wanted.get("init_args", {}))


def assert_same_arguments(actual: dict, wanted: dict) -> None:
    """Same keys; numbers and lists of numbers equal up to rounding.

    Lists are compared one by one: pytest >= 9 refuses a nested approx.
    """
    assert set(actual) == set(wanted), (sorted(actual), sorted(wanted))
    for key, value in wanted.items():
        got = actual[key]
        if isinstance(value, (list, tuple)):
            assert list(got) == pytest.approx(list(value)), key
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert got == pytest.approx(value), key
        else:
            assert got == value, key


def instantiate(tmp_path, *extra: str):
    args = ["--config", DEMO, "--trainer.default_root_dir", str(tmp_path), *extra]
    return run_cli(args, run=False).model


def test_registry_name_selects_the_loss_with_its_defaults(tmp_path):
    assert type(instantiate(tmp_path, "--model.loss", "AN").loss) is AssumeNegativeLoss
    model = instantiate(tmp_path, "--model.loss", "em+apl")  # case-insensitive
    assert type(model.loss) is AsymmetricPseudoLabelLoss and model.loss.beta == 0.02
    # The checkpoint stores a class path, so loading does not depend on the name.
    class_path = model.hparams["loss"]["class_path"]
    assert class_path == "spml_lightning.losses.em_apl.AsymmetricPseudoLabelLoss"


def test_class_name_switch_drops_the_previous_loss_arguments(tmp_path):
    model = instantiate(
        tmp_path, "--model.loss", "EntropyMaximizationLoss", "--model.loss.init_args.alpha", "0.05"
    )
    assert type(model.loss) is EntropyMaximizationLoss and model.loss.alpha == 0.05
    model = instantiate(
        tmp_path, "--model.loss", "spml_lightning.losses.GRLoss", "--model.loss.init_args.q3", "1.5"
    )
    assert type(model.loss) is GRLoss and model.loss.q3 == 1.5 and model.loss.q2 == 0.01


def test_unknown_loss_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown loss name 'NoSuchLoss'.*'EM\+APL'"):
        instantiate(tmp_path, "--model.loss", "NoSuchLoss")


def test_a_stateful_loss_trains_tests_and_reloads_from_the_cli(tmp_path, tiny_demo_root):
    extra = ["--model.loss", "ROLE", "--trainer.max_epochs", "1"]
    args = [*demo_args(tmp_path, tiny_demo_root), *extra]
    fit = run_cli(["fit", *args])
    assert isinstance(fit.model.loss, OnlineLabelEstimationLoss)
    test = run_cli(["test", *args, "--ckpt_path", "best"])  # a fresh, unbound loss loads the state
    assert 0 < test.trainer.callback_metrics["test/mAP"].item() <= 100
    best = fit.trainer.checkpoint_callback.best_model_path
    model = SPMLModule.load_from_checkpoint(best, map_location="cpu")
    assert model.loss.label_estimates.shape == (len(fit.datamodule.train_dataset), 14)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_trains_from_the_cli_on_the_demo_config(tmp_path, tiny_demo_root, name):
    # The registry defaults, except APL's warm-up, which must fit in 2 epochs.
    extra = ["--model.loss", name]
    if name == "EM+APL":
        extra = [
            "--config",
            str(REPO_ROOT / "configs" / "losses" / "em_apl.yaml"),
            "--model.loss.init_args.warmup_epochs",
            "1",
        ]
    cli = run_cli(["fit", *demo_args(tmp_path, tiny_demo_root), *extra])
    assert type(cli.model.loss) is LOSSES[name]
    assert cli.trainer.current_epoch == 2
    metrics = cli.trainer.callback_metrics
    assert metrics["train/loss_epoch"].isfinite() and 0 < metrics["val/mAP"].item() <= 100
