"""Search spaces: each loss's own, the optimiser's, a user's; keys checked against the config."""

import inspect

import pytest

from spml_lightning.console import UsageError
from spml_lightning.losses import LOSSES, GRLoss
from spml_lightning.losses.search_space import SearchRange
from spml_lightning.tuning import TuneOptions
from spml_lightning.tuning.config_paths import (
    config_leaves,
    get_path,
    plain_config,
    set_path,
    with_explicit_loss,
)
from spml_lightning.tuning.space import build_space, config_values, describe_difference, serialized

#: The published settings each declared range must hold (SPEC §2, §3, §8).
PUBLISHED = {
    "GR": {"q2": [0.01], "q3": [1.0, 1.5], "beta.1": [2.0, 10.0], "beta.3": [-2.0, -8.0],
           "alpha.2": [0.8], "alpha.3": [0.5]},
    "EM": {"alpha": [0.2, 0.1, 0.01]},
    "EM+APL": {"alpha": [0.2, 0.1, 0.01], "beta": [0.02, 0.9, 0.2, 0.4],
               "warmup_epochs": [5, 4, 3]},
    "LL-R": {"delta": [0.005]}, "LL-Ct": {"delta": [0.002]}, "LL-Cp": {"delta": [0.001]},
    "ROLE": {"lr_mult": [10.0]},
}  # fmt: skip


def demo_like_config(loss=None) -> dict:
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 2, "devices": 1, "default_root_dir": "runs"},
        "model": {"lr": 3e-3, "lr_mult": 1.0, "lr_batch_size": None},
        "data": {"class_path": "x.Y", "init_args": {"batch_size": 32, "root": "data"}},
        "checkpoint": {"monitor": "val/mAP", "mode": "max", "dirpath": None},
    }
    if loss is not None:
        config["model"]["loss"] = loss
    return with_explicit_loss(config)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_declared_key_is_an_argument_of_the_loss_and_its_default_lies_in_range(name):
    cls = LOSSES[name]
    parameters = inspect.signature(cls.__init__).parameters
    for key, value in cls.search_space.items():
        argument, _, index = key.partition(".")
        assert argument in parameters, (name, key)
        default = parameters[argument].default
        if index:
            default = default[int(index)]
        assert value.contains(default), (name, key, default, value)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_declared_ranges_hold_the_published_settings(name):
    space = LOSSES[name].search_space
    assert set(PUBLISHED[name]) <= set(space)
    for key, values in PUBLISHED[name].items():
        assert all(space[key].contains(v) for v in values), (name, key, space[key])


def test_a_search_range_from_yaml_and_back():
    entry = {"type": "float", "low": 0.001, "high": 1.0, "log": True}
    assert SearchRange.from_dict(entry).as_dict() == entry
    assert SearchRange.from_dict({"type": "int", "low": 2, "high": 8, "step": 2}).grid() == [
        2, 4, 6, 8,
    ]  # fmt: skip
    assert SearchRange.from_dict({"type": "categorical", "choices": [8, 16]}).grid() == [8, 16]
    with pytest.raises(ValueError, match="q2: a float range takes"):
        SearchRange.from_dict({"type": "float", "low": 0, "high": 1, "choices": [1]}, "q2")
    with pytest.raises(ValueError, match="'type' float, int or categorical"):
        SearchRange.from_dict({"low": 0, "high": 1})
    with pytest.raises(ValueError, match="log range needs low > 0"):
        SearchRange.from_dict({"type": "float", "low": 0, "high": 1, "log": True})
    with pytest.raises(ValueError, match="no grid"):
        SearchRange.uniform(0, 1).grid()


def test_config_paths_reach_into_lists_and_a_named_loss_gets_its_arguments_written():
    config = demo_like_config(loss="AN-LS")
    assert config["model"]["loss"]["init_args"] == {"smoothing": 0.1}
    config = demo_like_config()  # no loss: GR Loss's defaults
    assert get_path(config, "model.loss.init_args.beta.1") == 2.0
    set_path(config, "model.loss.init_args.beta.1", 10.0)
    assert config["model"]["loss"]["init_args"]["beta"] == [0.0, 10.0, -2.0, -2.0]
    assert "model.loss.init_args.beta.3" in config_leaves(config)
    with pytest.raises(KeyError):
        get_path(config, "model.loss.init_args.beta.4")


def test_the_default_space_is_the_loss_s_and_the_optimiser_s_around_the_config_values():
    config = demo_like_config()
    space = build_space(config, TuneOptions())
    assert set(space) == {f"model.loss.init_args.{key}" for key in GRLoss.search_space} | {
        "model.lr", "model.lr_mult", "data.init_args.batch_size",
    }  # fmt: skip
    lr = space["model.lr"]
    assert lr.log and (lr.low, lr.high) == pytest.approx((3e-4, 3e-2))
    values = config_values(config, space)
    assert values["model.loss.init_args.q2"] == 0.01 and values["data.init_args.batch_size"] == 32


def test_cole_s_grid_holds_the_config_s_own_batch_and_a_user_entry_replaces_a_built_in_one():
    config = demo_like_config(loss="AN")
    options = TuneOptions(
        spaces=["cole"], space={"model.lr": {"type": "categorical", "choices": [0.1, 0.01]}}
    )
    space = build_space(config, options)
    assert space["model.lr"].choices == (0.1, 0.01, 3e-3)  # the config's own value added
    assert space["data.init_args.batch_size"].choices == (8, 16, 32)


def test_only_the_user_s_entries_with_no_built_in_space():
    config = demo_like_config()
    options = TuneOptions(
        spaces=[], space={"trainer.max_epochs": {"type": "int", "low": 1, "high": 3}}
    )
    assert list(build_space(config, options)) == ["trainer.max_epochs"]
    with pytest.raises(UsageError, match="the search space is empty"):
        build_space(config, TuneOptions(spaces=[]))


def test_a_key_that_names_no_option_is_an_error_listing_the_valid_ones():
    config = demo_like_config()
    options = TuneOptions(
        space={"model.loss.init_args.qq2": {"type": "float", "low": 0, "high": 1}}
    )
    with pytest.raises(UsageError) as error:
        build_space(config, options)
    message = str(error.value)
    assert "'model.loss.init_args.qq2' names no option of this config" in message
    assert "Did you mean model.loss.init_args.q2" in message
    assert "model.lr_mult" in message and "model.loss.init_args.beta.1" in message


def test_a_recorded_space_and_another_differ_by_named_keys():
    config = demo_like_config()
    space = build_space(config, TuneOptions())
    other = build_space(config, TuneOptions(spaces=["loss"]))
    other["model.loss.init_args.q2"] = SearchRange.log_uniform(0.01, 0.1)
    difference = describe_difference(serialized(space), other)
    assert "removed data.init_args.batch_size, model.lr, model.lr_mult" in difference
    assert "model.loss.init_args.q2 was" in difference
    assert describe_difference(serialized(space), space) is None


def test_bad_tune_options_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="built-in spaces are"):
        TuneOptions(spaces=["losses"])
    with pytest.raises(ValueError, match="at least 1 trial"):
        TuneOptions(n_trials=0)
    with pytest.raises(ValueError, match="study_name"):
        TuneOptions(study_name="a/b")


def test_a_trial_trains_on_one_device_and_is_judged_by_val_map(tmp_path):
    from spml_lightning.tuning.study import plan_study

    config = demo_like_config()
    config["trainer"].update(devices=2, default_root_dir=str(tmp_path))
    with pytest.raises(UsageError, match="one worker per GPU instead"):
        plan_study(config, TuneOptions())
    config["trainer"]["devices"] = "auto"
    plan = plan_study(config, TuneOptions(study_name="x"))
    assert plan.config["trainer"]["devices"] == 1
    assert plan.folder == tmp_path / "tune" / "x"
    assert plan.storage == f"sqlite:///{tmp_path / 'tune' / 'x' / 'study.db'}"
    config["checkpoint"]["monitor"] = "val/OF1"
    with pytest.raises(UsageError, match="leave checkpoint.monitor val/mAP"):
        plan_study(config, TuneOptions())


def test_a_parsed_config_becomes_yaml_s_plain_types_or_an_error_naming_the_option():
    from pathlib import Path

    assert plain_config({"a": (1, Path("/x")), "b": {"c": None}}) == {
        "a": [1, "/x"],
        "b": {"c": None},
    }
    with pytest.raises(UsageError, match="model.backbone: a object has no YAML form"):
        plain_config({"model": {"backbone": object()}})


def test_the_samplers_and_pruners_the_options_name():
    import optuna

    from spml_lightning.tuning.study import _pruner, _sampler

    config = demo_like_config()
    hyperband = _pruner(TuneOptions(pruner="hyperband"), config)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 2  # the config's max_epochs
    assert isinstance(_pruner(TuneOptions(pruner="none"), config), optuna.pruners.NopPruner)
    assert isinstance(_sampler(TuneOptions(sampler="random"), {}), optuna.samplers.RandomSampler)
    space = build_space(config, TuneOptions(spaces=["cole"]))
    assert isinstance(_sampler(TuneOptions(sampler="grid"), space), optuna.samplers.GridSampler)
    with pytest.raises(UsageError, match="grid: model.loss.init_args.alpha.2: a continuous float"):
        _sampler(TuneOptions(sampler="grid"), build_space(config, TuneOptions()))
