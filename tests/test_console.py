"""How a parser's report of a bad value becomes one line (spml_lightning.console)."""

from __future__ import annotations

from spml_lightning.console import _parser_message

# jsonargparse 4.41's report of a constructor's own error (the floor of pyproject.toml).
UNION_REPORT = """Does not validate against any of the Union subtypes
Subtypes: [<class 'NoneType'>, <class 'spml_lightning.data.base.SPMLDataModule'>]
Errors:
  - Expected a <class 'NoneType'>
  - batch_size must be at least 1, got 0.
Given value type: <class 'jsonargparse._namespace.Namespace'>
Given value: Namespace(class_path='spml_lightning.data.DemoDataModule', init_args=Namespace())
"""


def test_a_constructor_error_listed_by_an_older_jsonargparse_is_the_message():
    assert _parser_message(UNION_REPORT) == "batch_size must be at least 1, got 0."


def test_several_or_no_own_errors_leave_the_report_whole():
    two = UNION_REPORT.replace(
        "  - batch_size must be at least 1, got 0.\n",
        "  - batch_size must be at least 1, got 0.\n  - num_workers must be >= 0.\n",
    )
    assert _parser_message(two) == two
    only_types = UNION_REPORT.replace(
        "  - batch_size must be at least 1, got 0.\n", "  - Expected a <class 'str'>\n"
    )
    assert _parser_message(only_types) == only_types


def test_nan_and_inf_flags_are_named_not_a_finite_number(tmp_path, capsys):
    import pytest

    from spml_lightning import SPMLModule
    from spml_lightning.cli import main

    from probes import REPO_ROOT

    for flag, value in (("--model.lr", "nan"), ("--data.init_args.val_fraction", "inf")):
        config = ["--config", str(REPO_ROOT / "configs" / "demo.yaml")]
        assert main(["fit", *config, flag, value]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line == f"spml fit: error: {flag}: expected a finite number, got {value}", line
    # The Python API takes them as floats: the model refuses them itself.
    for lr, lr_mult in ((float("nan"), 1.0), (1e-3, float("inf"))):
        with pytest.raises(ValueError, match="lr and lr_mult must be finite positive numbers"):
            SPMLModule(num_classes=2, backbone="resnet18", weights="none", lr=lr, lr_mult=lr_mult)
