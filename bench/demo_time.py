"""Wall time of the demo as a user runs it: the data's first generation, then fit + test.

Runs the installed ``spml`` (the executable next to this Python) exactly as the README
does, in a temporary folder so that nothing of the checkout is reused:

1. the demo set's first generation (``DemoDataModule.prepare_data`` in a fresh process,
   with the config's data arguments), against its goal;
2. ``spml fit --config configs/demo.yaml`` then ``spml test ... --ckpt_path best`` with
   the data already there, ``--repeats`` times, each command's wall time and their sum,
   and the test mAP that ``spml test`` printed.

Measure on a quiet machine: other trainings running beside it slow a 2-core CPU
several-fold (the load averages are printed at the start and the end).

    python bench/demo_time.py [--repeats 3] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from harness import cpu_name, print_check, print_load

REPO = Path(__file__).resolve().parent.parent
SPML = Path(sys.executable).with_name("spml")
#: The issue's goals for the demo on a 2-core CPU: fit + test, and the first generation.
FIT_TEST_GOAL_S = 120.0
GENERATE_GOAL_S = 30.0
_TEST_MAP = re.compile(r"test/mAP\s*[│|]?\s*([0-9.]+)")


def timed(command: list[str]) -> tuple[float, str]:
    """Run a command to completion; its wall time and output. A failure ends the bench."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def generate_seconds(config: Path, root: Path) -> float:
    """Wall time of a fresh process drawing the config's demo set into ``root``."""
    init_args = yaml.safe_load(config.read_text())["data"]["init_args"]
    keys = ("num_train", "num_test", "render_size", "seed")
    arguments = ", ".join(f"{k}={init_args[k]!r}" for k in keys if k in init_args)
    code = (
        "from spml_lightning.data import DemoDataModule; "
        f"DemoDataModule(root={str(root)!r}, {arguments}).prepare_data()"
    )
    seconds, _ = timed([sys.executable, "-c", code])
    return seconds


def main_bench(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not SPML.is_file():
        sys.exit(f"No installed spml next to {sys.executable}: run `pip install -e .` first.")
    shown = args.config.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    print(f"# demo_time: {shown}; machine: {cpu_name()}")
    print_load("start")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generated = generate_seconds(args.config, data)
        totals = []
        for repeat in range(args.repeats):
            common = [
                "--config", str(args.config),
                "--data.init_args.root", str(data),
                "--trainer.default_root_dir", str(Path(tmp) / f"runs{repeat}"),
            ]  # fmt: skip
            fit, _ = timed([str(SPML), "fit", *common])
            test, output = timed([str(SPML), "test", *common, "--ckpt_path", "best"])
            found = _TEST_MAP.search(output)
            shown = f"{float(found.group(1)):.2f}" if found else "not found in the output"
            totals.append(fit + test)
            print(
                f"#   run {repeat + 1}/{args.repeats}: fit {fit:.1f} s, test {test:.1f} s, "
                f"together {fit + test:.1f} s; test mAP {shown}",
                flush=True,
            )
    print_load("end")
    print_check("demo data, first generation (s)", generated, goal=GENERATE_GOAL_S)
    print_check(
        f"demo fit + test, median of {len(totals)} (s)",
        statistics.median(totals),
        goal=FIT_TEST_GOAL_S,
    )


if __name__ == "__main__":
    main_bench()
