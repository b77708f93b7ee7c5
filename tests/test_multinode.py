"""Several machines: the ranks refuse to start from different checkpoints.

Each process resolves ``--ckpt_path last`` in its own view of ``default_root_dir``.
"""

from __future__ import annotations

import os

import torch

from ddp_harness import run_ranks
from spml_lightning.cli import check_same_checkpoint


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
