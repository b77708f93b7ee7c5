"""CPU milliseconds per rendered demo image (the demo set is drawn on first use).

2,800 images (train + test) should take well under 20 s on 2 cores: about 1.5 ms each
is typical, 5 ms the ceiling. CPU time of this process, not wall time, so that other
jobs on a shared machine count less.

    python bench/experiments/demo_render.py [--images 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: harness
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout
from harness import cpu_name, print_check, print_load  # noqa: E402


def main_bench(argv: list[str] | None = None) -> None:
    """Render the demo images and print the CPU time per image against its ceiling."""
    from spml_lightning.data.demo import render_demo_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"# demo_render: {args.images} images; machine: {cpu_name()}")
    print_load("start")
    start = time.process_time()
    render_demo_images(args.images, seed=9)
    per_image_ms = (time.process_time() - start) / args.images * 1000
    print_load("end")
    print_check("demo render, CPU ms per image", per_image_ms, goal=5.0)


if __name__ == "__main__":
    main_bench()
