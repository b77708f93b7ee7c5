"""Host memory of a COCO-sized datamodule with many loader workers.

Builds a data set in the community's formatted layout with COCO's training
phase size (82,081 rows x 80 labels; the image files are hard links to a few
tiny JPEGs, so that the rows are real files that ``setup`` finds but cost no
disk), sets up ``FormattedDataModule`` and iterates its training loader with
14 workers while a thread samples the memory of the main process and of every
worker from ``/proc/<pid>/smaps_rollup``:

- USS (pages only this process maps): what a worker really costs;
- PSS (shared pages split between their users): sums to the total;
- RSS (every mapped page, shared ones in full).

The same loader over a data set that keeps its paths in a Python list and
its labels as float64 matrices (``naive``) shows what the numpy storage
avoids: a forked worker that reads a Python object writes its reference
count, which copies the object's memory page into that worker; over an
epoch every worker ends up with its own copy of most of the list.

    python bench/loader_memory.py [--workers 14] [--rows 82081]

Goal 5: the whole (main + workers) costs no more than a few hundred MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import (
    cpu_name,
    interleave,
    print_check,
    print_load,
    print_ratio,
    write_formatted_dataset,
)  # noqa: E402

MB = 1024 * 1024


def memory_of(pid: int) -> dict[str, int] | None:
    """USS/PSS/RSS bytes of a process, None once it exited.

    Only RSS where ``/proc/<pid>/smaps_rollup`` is missing.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            return None
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return {"rss": rss * 1024, "pss": rss * 1024, "uss": rss * 1024}
    except OSError:
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0]) * 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def children_of(pid: int) -> list[int]:
    """Direct child processes (the loader workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


class MemorySampler(threading.Thread):
    """Samples the main process and its new children every ``interval`` seconds; keeps the peaks.

    Children alive before the sampler is made are not the loader's workers (under
    pytest: persistent workers or kernels of earlier tests) and are left out.
    """

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.pid = os.getpid()
        self.earlier_children = set(children_of(self.pid))
        self.peak_total_pss = 0
        self.peak_main: dict[str, int] = {"rss": 0, "pss": 0, "uss": 0}
        self.peak_worker: dict[int, dict[str, int]] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        """One reading of the main process and every new child; updates the peaks."""
        main = memory_of(self.pid)
        new_children = [c for c in children_of(self.pid) if c not in self.earlier_children]
        workers = {child: memory_of(child) for child in new_children}
        workers = {pid: m for pid, m in workers.items() if m is not None}
        if main is not None:
            for key in self.peak_main:
                self.peak_main[key] = max(self.peak_main[key], main[key])
            self.peak_total_pss = max(
                self.peak_total_pss, main["pss"] + sum(m["pss"] for m in workers.values())
            )
        for pid, m in workers.items():
            peak = self.peak_worker.setdefault(pid, {"rss": 0, "pss": 0, "uss": 0})
            for key in peak:
                peak[key] = max(peak[key], m[key])

    def stop(self) -> None:
        self._done.set()
        self.join()


class NaiveDataset(Dataset):
    """What the numpy storage avoids: paths as a Python list, labels as float64 matrices."""

    def __init__(self, paths, targets, observed, transform) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.float64)
        self.observed = np.asarray(observed, dtype=np.float64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        from spml_lightning.data.io import load_rgb

        return {
            "image": self.transform(load_rgb(self.paths[index])),
            "observed": torch.from_numpy(self.observed[index].astype(np.float32)),
            "target": torch.from_numpy(self.targets[index].astype(np.float32)),
            "index": index,
        }


def measure(root: Path, workers: int, batches: int, naive: bool) -> dict[str, float]:
    """Peak memory while iterating ``batches`` batches of the training loader."""
    from spml_lightning.data import FormattedDataModule

    before = memory_of(os.getpid())
    datamodule = FormattedDataModule(
        root=str(root), image_size=32, batch_size=32, num_workers=workers
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    if naive:
        dataset = datamodule.train_dataset
        naive_set = NaiveDataset(
            dataset.image_paths, dataset.targets, dataset.observed, dataset.transform
        )
        loader = DataLoader(naive_set, batch_size=32, shuffle=True, num_workers=workers)
    sampler = MemorySampler()
    sampler.start()
    # The iterator is held until the last sample: dropping it (as a `for ... break`
    # does) shuts the workers down, and a worker the 50-ms sampler had not caught
    # yet would then be missed altogether.
    iterator = iter(loader)
    for _ in range(batches):
        next(iterator)
    sampler.stop()
    sampler.sample()  # every worker is alive now
    del iterator, loader
    peaks = list(sampler.peak_worker.values())
    return {
        "rows": len(datamodule.train_dataset) + len(datamodule.val_dataset),
        "workers_seen": len(peaks),
        "main_before_mb": before["pss"] / MB,
        "main_peak_pss_mb": sampler.peak_main["pss"] / MB,
        "main_peak_rss_mb": sampler.peak_main["rss"] / MB,
        "total_peak_pss_mb": sampler.peak_total_pss / MB,
        "worker_uss_max_mb": max(p["uss"] for p in peaks) / MB,
        "worker_uss_sum_mb": sum(p["uss"] for p in peaks) / MB,
        "worker_rss_max_mb": max(p["rss"] for p in peaks) / MB,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=82081, help="rows of the training phase (COCO: 82,081)"
    )
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="default: a quarter of the epoch, so that every worker reads thousands of rows",
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the Python-lists comparison")
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batches = args.batches or max(4 * args.workers, int(args.rows * 0.8) // 32 // 4)
    print(
        f"# loader_memory: {args.rows} rows x 80 labels, {args.workers} workers, "
        f"{batches} batches of 32"
    )
    print(
        f"# machine: {cpu_name()}; torch {torch.__version__}; "
        "smaps_rollup "
        f"{'available' if Path('/proc/self/smaps_rollup').exists() else 'MISSING: RSS only'}"
    )
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or Path(tmp) / "data"
        start = time.perf_counter()
        write_formatted_dataset(root, args.rows, 16, 80, 48, 36, distinct_images=64)
        print(f"# data set written in {time.perf_counter() - start:.1f} s")
        sides = {"spml": lambda: measure(root, args.workers, batches, naive=False)}
        if not args.no_naive:
            sides["naive"] = lambda: measure(root, args.workers, batches, naive=True)
        results = interleave(sides, 1, verbose=False)
    print_load("end")
    for name, (result,) in results.items():
        shown = ", ".join(f"{key} {value:.1f}" for key, value in result.items())
        print(f"{name:<8} {shown}")
    spml = results["spml"][0]
    print_check(f"main + {args.workers} workers, peak total PSS, MB", spml["total_peak_pss_mb"])
    print_check(
        "... of which added by the datamodule and its workers, MB (goal 5)",
        spml["total_peak_pss_mb"] - spml["main_before_mb"],
        400.0,
    )
    print_check("one worker's peak USS (its private pages), MB", spml["worker_uss_max_mb"])
    if "naive" in results:
        naive = results["naive"][0]
        print_ratio(
            "workers' USS sum, naive (Python lists, float64) / spml",
            naive["worker_uss_sum_mb"] / spml["worker_uss_sum_mb"],
        )


if __name__ == "__main__":
    main()
