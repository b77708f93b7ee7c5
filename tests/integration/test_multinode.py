"""Several machines: the launch commands of the guide's "Several machines" section.

The commands are read from docs/guides/distributed.md, so the documented ones are the tested
ones (only sizes, addresses, ports and the data are this host's).

* torchrun: two "machines" on this host, i.e. two torchrun launches (node
  ranks 0 and 1, ``--nnodes 2``, one CPU process each, gloo over 127.0.0.1),
  train the tiny demo with EM+APL, a loss whose per-sample state is built from
  every rank's shard (its scoring pass shards the training set by global rank,
  the rank that differs between the launches). Every epoch both must end with
  the validation mAP, weights and loss state of the same run on one machine
  with two processes, and one process validating the checkpoint must get the
  same mAP and loss state. (Training itself cannot match one process bit for
  bit: batch norm sees each rank's half batch, gradients are averaged in
  another order.)
* SLURM: the ``srun`` command under the environment srun gives the tasks of
  the ``#SBATCH`` header is accepted and maps tasks to ranks.
* The ranks refuse to start from different checkpoints (each resolves
  ``--ckpt_path last`` in its own view of ``default_root_dir``).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities.rank_zero import (
    rank_zero_only as lightning_rank_zero_only,
)
from lightning_utilities.core.rank_zero import (
    rank_zero_only as utilities_rank_zero_only,
)

from spml_lightning.cli import run_cli
from spml_lightning.training import SameCheckpointOnEveryRank, check_same_checkpoint

from ddp_harness import run_ranks
from probes import (
    REPO_ROOT,
    demo_args,
    read_records,
    subprocess_env,
    tensor_digest,
    write_callbacks_config,
)

GUIDE = REPO_ROOT / "docs" / "guides" / "distributed.md"
SECTION = "## Several machines"
LAUNCH_TIMEOUT_S = 300


def guide_section(title: str = SECTION) -> list[str]:
    """The code blocks of one guide section, each as its logical lines (continuations joined)."""
    lines = GUIDE.read_text().splitlines()
    start = lines.index(title) + 1
    blocks: list[list[str]] = []
    fenced = False
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
            if fenced:
                blocks.append([])
            continue
        if fenced:
            block = blocks[-1]
            if block and block[-1].endswith("\\"):
                block[-1] = block[-1][:-1] + line
            else:
                block.append(line)
        elif line.startswith("#"):
            break  # the next heading
    return [line for block in blocks for line in block]


def guide_command(program: str) -> list[str]:
    """The guide section's command line that starts with ``program``, split as the shell does."""
    (line,) = [line for line in guide_section() if line.split(maxsplit=1)[:1] == [program]]
    return shlex.split(line)


def with_values(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with the value following each flag of ``values`` replaced.

    Every flag must be there.
    """
    argv = list(argv)
    for flag, value in values.items():
        assert flag in argv, f"the documented command has no {flag}"
        argv[argv.index(flag) + 1] = value
    return argv


def without_flags(argv: list[str], flags: set[str]) -> list[str]:
    """``argv`` (flag, value pairs) without the given flags and their values."""
    assert len(argv) % 2 == 0, argv
    pairs = list(zip(argv[::2], argv[1::2], strict=True))
    return [item for flag, value in pairs if flag not in flags for item in (flag, value)]


def tiny_spml_args(documented_args: list[str], tmp_path: Path, root: Path, run: str) -> list[str]:
    """A documented ``spml fit`` command on the tiny demo on this CPU, with a RunRecorder."""
    recorder = [("probes.RunRecorder", {"prefix": str(tmp_path / run)})]
    return [
        *with_values(
            documented_args,
            {
                "--config": str(REPO_ROOT / "configs" / "demo.yaml"),
                "--data.root": str(root),
                "--trainer.default_root_dir": str(tmp_path / run),
                "--trainer.accelerator": "cpu",
                "--trainer.devices": "1",
            },
        ),
        *without_flags(
            demo_args(tmp_path, root),
            {"--config", "--trainer.default_root_dir", "--data.init_args.root"},
        ),
        "--data.init_args.batch_size",
        "8",  # per process: 2 x 8 images per step
        "--trainer.num_sanity_val_steps",
        "0",
        "--model.loss",
        "AsymmetricPseudoLabelLoss",
        "--model.loss.init_args.warmup_epochs",
        "1",  # pseudo-labels from the scoring pass at epoch 1
        "--config",
        str(write_callbacks_config(tmp_path / f"{run}.yaml", recorder)),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc).

    torchrun starts its workers in their own sessions.
    """
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_launches(commands: list[list[str]], cwd: Path, timeout: float) -> tuple[list[int], str]:
    """Run the commands at once, each logging to ``cwd/node<i>.log``.

    Returns their exit statuses and a report.

    Past ``timeout`` (a hung collective) every launcher and every process it
    started is killed; the report then says so. It ends with the tail of each log.
    """
    logs = [cwd / f"node{i}.log" for i in range(len(commands))]
    processes = []
    for command, log in zip(commands, logs, strict=True):
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=subprocess_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.2)
    hung = [i for i, p in enumerate(processes) if p.poll() is None]
    if hung:
        workers = [pid for p in processes for pid in descendants(p.pid)]
        for pid in [p.pid for p in processes] + workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in processes:
            p.wait()
    report = "\n".join(
        f"--- node {i}: "
        + (f"killed after {timeout:.0f} s" if i in hung else f"exit status {p.returncode}")
        + f", {log}:\n"
        + log.read_text()[-3000:]
        for i, (p, log) in enumerate(zip(processes, logs, strict=True))
    )
    return [p.returncode for p in processes], report


def epochs(records: list[dict]) -> list[dict]:
    """Per epoch: validation mAP, weights and loss-state digests."""
    val = {r["epoch"]: r["mAP"] for r in records if r["kind"] == "val"}
    return [
        {
            "epoch": r["epoch"],
            "mAP": val.get(r["epoch"]),
            "weights": r["weights"],
            "loss_state": r["loss_state"],
        }
        for r in records
        if r["kind"] == "epoch_end"
    ]


def test_two_machines_with_torchrun_match_one_machine(tmp_path, tiny_demo_root):
    torchrun = guide_command("torchrun")
    split = torchrun.index("-m")
    launcher, (module, subcommand, *documented_spml) = torchrun[1:split], torchrun[split + 1 :]
    assert (module, subcommand) == ("spml_lightning", "fit")
    nodes = int(launcher[launcher.index("--nnodes") + 1])
    assert nodes == 2 and documented_spml[documented_spml.index("--trainer.num_nodes") + 1] == "2"
    assert documented_spml[documented_spml.index("--trainer.strategy") + 1] == "ddp"
    assert (
        documented_spml[documented_spml.index("--ckpt_path") + 1] == "last"
    )  # the first start of a restartable job

    args = tiny_spml_args(documented_spml, tmp_path, tiny_demo_root, "nodes")
    port = str(free_port())
    commands = [
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *with_values(
                launcher,
                {
                    "--nproc_per_node": "1",
                    "--node_rank": str(node),
                    "--master_addr": "127.0.0.1",
                    "--master_port": port,
                },
            ),
            "-m",
            "spml_lightning",
            "fit",
            *args,
        ]
        for node in range(nodes)
    ]
    statuses, report = run_launches(commands, tmp_path, LAUNCH_TIMEOUT_S)
    assert statuses == [0] * nodes, report
    ranks = [read_records(tmp_path / "nodes", rank) for rank in range(nodes)]
    assert all(ranks), report

    # Global rank = node rank here (one process per machine): each machine trained its own shard.
    for epoch in range(2):
        seen = [
            {i for r in records if r["kind"] == "train" and r["epoch"] == epoch for i in r["index"]}
            for records in ranks
        ]
        assert seen[0] and seen[1] and not seen[0] & seen[1], epoch

    # The same run on one machine with two processes (forked from this one), and the
    # per-epoch numbers of all four processes.
    machine = with_values(
        tiny_spml_args(documented_spml, tmp_path, tiny_demo_root, "machine"),
        {"--trainer.num_nodes": "1", "--trainer.devices": "2", "--trainer.strategy": "ddp_fork"},
    )
    fit = run_cli(["fit", *machine])
    assert any(
        isinstance(c, SameCheckpointOnEveryRank) for c in fit.trainer.callbacks
    )  # --ckpt_path was given
    reference = epochs(read_records(tmp_path / "machine", 0))
    assert len(reference) == 2 and all(epoch["mAP"] is not None for epoch in reference)
    assert reference[0]["loss_state"] != reference[1]["loss_state"]  # APL assigned pseudo-labels
    for name, records in [
        ("machine rank 1", read_records(tmp_path / "machine", 1)),
        *((f"node {node}", records) for node, records in enumerate(ranks)),
    ]:
        assert epochs(records) == reference, name

    # One process: the checkpoint node 0 wrote holds the same loss state and validates to the
    # same mAP.
    (last,) = (tmp_path / "nodes").rglob("last.ckpt")
    single = with_values(
        without_flags(machine, {"--ckpt_path"}),
        {"--trainer.devices": "1", "--trainer.strategy": "auto"},
    )
    validate = run_cli(["validate", *single, "--ckpt_path", str(last)])
    assert tensor_digest(validate.model.loss.state_dict()) == reference[-1]["loss_state"]
    # (Bit-identical on this CPU; the tolerance is test_ddp.py's, for kernels that sum differently.)
    assert validate.trainer.callback_metrics["val/mAP"].item() == pytest.approx(
        reference[-1]["mAP"], abs=1e-4
    )


def sbatch_options() -> dict[str, str]:
    """The ``#SBATCH`` options of the guide section (``--name value``)."""
    lines = [line.split(maxsplit=1)[1] for line in guide_section() if line.startswith("#SBATCH ")]
    return dict(shlex.split(line)[:2] for line in lines)


@pytest.mark.parametrize("task", [0, 5])
def test_sbatch_example_maps_slurm_tasks_to_ranks(tmp_path, tiny_demo_root, monkeypatch, task):
    # Building the trainer sets this process's rank for Lightning's rank-zero-only
    # functions (loggers, messages): the rest of the session stays rank 0.
    for rank_zero_only in (lightning_rank_zero_only, utilities_rank_zero_only):
        monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    options = sbatch_options()
    nodes, per_node = int(options["--nodes"]), int(options["--ntasks-per-node"])
    # What srun sets for each of the job's tasks.
    for name, value in {
        "SLURM_JOB_NAME": "spml",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "gpu[01-02]",
        "SLURM_NNODES": nodes,
        "SLURM_NTASKS_PER_NODE": per_node,
        "SLURM_NTASKS": nodes * per_node,
        "SLURM_PROCID": task,
        "SLURM_NODEID": task // per_node,
        "SLURM_LOCALID": task % per_node,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(name, str(value))
    srun = guide_command("srun")
    assert srun[1:3] == ["spml", "fit"] and srun[srun.index("--ckpt_path") + 1] == "last"
    # The guide's flags, devices and nodes included (SLURMEnvironment checks them against
    # the #SBATCH values); only the data, the folder and the accelerator are this machine's.
    # (Built, not run: without a subcommand, so without --ckpt_path.)
    args = with_values(
        without_flags(srun[3:], {"--ckpt_path"}),
        {
            "--config": str(REPO_ROOT / "configs" / "demo.yaml"),
            "--data.root": str(tiny_demo_root),
            "--trainer.default_root_dir": str(tmp_path / "runs"),
            "--trainer.accelerator": "cpu",
        },
    )
    trainer = run_cli(args, run=False).trainer
    assert type(trainer.strategy.cluster_environment).__name__ == "SLURMEnvironment"
    assert (trainer.world_size, trainer.num_nodes, trainer.num_devices) == (
        nodes * per_node,
        nodes,
        per_node,
    )
    assert (trainer.global_rank, trainer.node_rank, trainer.local_rank) == (
        task,
        task // per_node,
        task % per_node,
    )


def _agreement_worker(rank: int, world_size: int, cases: dict[str, list], out_dir: str) -> None:
    outcomes = {}
    for name, paths in cases.items():
        try:
            check_same_checkpoint(paths[rank])
            outcomes[name] = "ok"
        except RuntimeError as err:
            outcomes[name] = str(err)
    torch.save(outcomes, os.path.join(out_dir, f"agreement{rank}.pt"))


def test_every_rank_stops_when_the_ranks_found_different_checkpoints(tmp_path):
    shared = tmp_path / "shared" / "last.ckpt"
    shared.parent.mkdir()
    torch.save({"epoch": 3, "global_step": 120, "state_dict": {}}, shared)
    copy = tmp_path / "node1" / "last.ckpt"  # a copy on the other machine: same training position
    copy.parent.mkdir()
    copy.write_bytes(shared.read_bytes())
    older = tmp_path / "node1" / "older.ckpt"
    torch.save({"epoch": 1, "global_step": 40, "state_dict": {}}, older)
    cases = {
        "same file": [str(shared), str(shared)],
        "a copy": [str(shared), str(copy)],
        "nothing anywhere": [None, None],
        "not found on node 1": [str(shared), None],
        "an older run on node 1": [str(shared), str(older)],
    }
    run_ranks(_agreement_worker, tmp_path, cases, str(tmp_path))
    outcomes = [torch.load(tmp_path / f"agreement{rank}.pt") for rank in range(2)]
    assert outcomes[0] == outcomes[1]
    agreed = [name for name, outcome in outcomes[0].items() if outcome == "ok"]
    assert agreed == ["same file", "a copy", "nothing anywhere"]
    missing = outcomes[0]["not found on node 1"]
    assert f"rank 0: {shared} (epoch 3, step 120)" in missing and "rank 1: no checkpoint" in missing
    assert "default_root_dir" in missing
    assert f"rank 1: {older} (epoch 1, step 40)" in outcomes[0]["an older run on node 1"]
