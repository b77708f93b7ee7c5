"""Long-run soak (slow; `make soak`): memory stays flat and disk bounded over many epochs.

The demo trains for many epochs with last.ckpt rewritten several times per
epoch and the top-2 kept. Host RSS (and open file descriptors) are sampled at
every epoch end: after a few warm-up epochs they must stop growing. A leak of
a few hundred kB per epoch -- e.g. validation outputs or per-step records kept
on the module, worker processes or file handles not released -- shows up as a
steady climb well above the noise of the allocator.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest
from lightning.pytorch import Callback

from spml_lightning.cli import run_cli

from probes import demo_args, write_callbacks_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self"),
]

EPOCHS = 30
WARM_UP = 6
TOP_K = 2


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ResourceMonitor(Callback):
    """Host RSS and open file descriptors at every training epoch end (after a GC)."""

    samples: list[tuple[int, int]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        gc.collect()
        ResourceMonitor.samples.append((resident_bytes(), len(os.listdir("/proc/self/fd"))))


def test_many_epochs_keep_memory_flat_and_disk_bounded(tmp_path, tiny_demo_root):
    ResourceMonitor.samples = []
    config = write_callbacks_config(
        tmp_path / "callbacks.yaml", [("test_soak.ResourceMonitor", {})]
    )
    cli = run_cli(
        [
            "fit",
            *demo_args(tmp_path, tiny_demo_root),
            "--config",
            str(config),
            "--trainer.max_epochs",
            str(EPOCHS),
            "--trainer.limit_train_batches",
            "3",
            "--data.init_args.batch_size",
            "16",
            "--data.init_args.num_workers",
            "2",  # worker processes start and stop every epoch
            "--trainer.log_every_n_steps",
            "1",
            # The smallest supported backbone keeps ~6 checkpoint writes per epoch cheap.
            "--model.backbone",
            "mobilenet_v3_small",
            "--checkpoint.last_every_n_train_steps",
            "1",
            "--checkpoint.save_top_k",
            str(TOP_K),
        ]
    )
    assert cli.trainer.current_epoch == EPOCHS

    rss = np.array([s[0] for s in ResourceMonitor.samples], dtype=float) / 2**20
    fds = [s[1] for s in ResourceMonitor.samples]
    steady = rss[WARM_UP:]
    slope = np.polyfit(np.arange(len(steady)), steady, 1)[0]
    report = f"RSS per epoch (MiB): {np.round(rss, 1).tolist()}"
    assert slope < 0.25, f"host RSS grows by {slope:.2f} MiB per epoch. {report}"
    assert steady.max() - steady[0] < 40, report
    # Worker pipes close asynchronously, so the count jitters by a few; a leak climbs.
    assert max(fds) - min(fds) <= 8, f"open file descriptors per epoch: {fds}"
    print(f"\nsoak: RSS slope {slope:.3f} MiB/epoch; {report}; fds {fds}")

    (folder,) = {p.parent for p in tmp_path.rglob("*.ckpt")}
    files = sorted(p.name for p in folder.iterdir())
    assert files.count("last.ckpt") == 1 and len(files) == TOP_K + 1, (
        files
    )  # no temporaries, no extras
    sizes = [p.stat().st_size for p in folder.iterdir()]
    assert sum(sizes) <= (TOP_K + 1) * max(sizes)
