"""Two CPU processes (DDP over gloo) agree with each other and with one process.

One real `spml` run of fit -> validate -> test on 2 ranks, on a demo set
whose validation (17) and test (41) sizes are odd, so the DistributedSampler
pads each with a repeated image that the metric must count once.
"""

from __future__ import annotations

import pytest

from spml_lightning.cli import run_cli
from spml_lightning.data.demo import write_demo_dataset

from probes import (
    F1_RECORDED,
    demo_args,
    read_records,
    run_ddp_driver,
    write_callbacks_config,
)

ODD_DEMO = {"num_train": 85, "num_test": 41, "render_size": 32}  # 68 train / 17 val, 41 test


def test_two_process_ddp_matches_one_process(tmp_path):
    root = tmp_path / "demo"
    write_demo_dataset(
        root, ODD_DEMO["num_train"], ODD_DEMO["num_test"], ODD_DEMO["render_size"], seed=0
    )
    args = [
        *demo_args(tmp_path, root),
        "--data.init_args.num_train",
        str(ODD_DEMO["num_train"]),
        "--data.init_args.num_test",
        str(ODD_DEMO["num_test"]),
        "--data.init_args.batch_size",
        "8",
        "--trainer.num_sanity_val_steps",
        "0",
        "--model.loss.init_args.k_form",
        "learned",  # loss state that every rank must share
    ]
    prefix = tmp_path / "record"
    recorder = write_callbacks_config(
        tmp_path / "callbacks.yaml", [("probes.RunRecorder", {"prefix": str(prefix)})]
    )
    ddp = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    run_ddp_driver(tmp_path, [*args, *ddp, "--config", str(recorder)])
    ranks = [read_records(prefix, rank) for rank in (0, 1)]

    # Every rank trained on its own half of each epoch, under the same schedule,
    # and ended every epoch with the same weights and the same loss state.
    for kind, keys in (
        ("train", ("step", "epoch", "schedule")),
        ("epoch_end", ("epoch", "weights", "loss_state")),
    ):
        per_rank = [
            [{k: r[k] for k in keys} for r in records if r["kind"] == kind] for records in ranks
        ]
        assert per_rank[0] and per_rank[0] == per_rank[1], kind
    seen = [
        {i for r in records if r["kind"] == "train" and r["epoch"] == 0 for i in r["index"]}
        for records in ranks
    ]
    assert seen[0] and seen[1] and not seen[0] & seen[1]

    # Validation during fit, validate and test: one value, the same on both ranks.
    maps = [[r["mAP"] for r in records if r["kind"] in ("val", "test")] for records in ranks]
    assert len(maps[0]) == 4 and maps[0] == maps[1]  # 2 epochs + validate + test
    ddp_val, ddp_test = maps[0][2], maps[0][3]

    # One process, same checkpoints: the same numbers. (Bit-identical on this CPU;
    # the tolerance allows kernels that sum differently for another batch size.
    # One padded row counted twice moves the demo's val mAP by about 0.2.)
    (last,) = tmp_path.rglob("last.ckpt")
    single = [*args, "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    val = (
        run_cli(["validate", *single, "--ckpt_path", str(last)])
        .trainer.callback_metrics["val/mAP"]
        .item()
    )
    tested = run_cli(["test", *single, "--ckpt_path", "best"]).trainer.callback_metrics
    assert val == pytest.approx(ddp_val, abs=1e-4)
    assert tested["test/mAP"].item() == pytest.approx(ddp_test, abs=1e-4)
    # The F1 metrics come from the same gathered rows: the padded row is not counted twice.
    (ddp_tested,) = [r for r in ranks[0] if r["kind"] == "test"]
    for name in F1_RECORDED:
        assert tested[f"test/{name}"].item() == pytest.approx(ddp_tested[name], abs=1e-4), name
