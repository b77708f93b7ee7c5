"""Shared fixtures: the tiny demo set (made once per session), INFO lines, bench/ scripts."""

import importlib
import logging
import os
from pathlib import Path

import pytest

# Keep test runs quiet and independent of the user's environment.
os.environ.setdefault("PYTHONHASHSEED", "0")
# One OpenMP thread per process (set before torch is imported; inherited by the
# notebook kernels): the tests' models are tiny, and on a machine whose cores are
# busy with other processes two threads wait for each other at every barrier,
# which made Trainer tests many times slower (docs/results/performance.md).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from probes import REPO_ROOT, TINY_DEMO, demo_args

# The data-set fixtures the tests read (tests/data/<name>/): a test that writes there
# (a data cache, say) changes what later tests and later runs read, and leaves the
# clone dirty; such a test must copy the fixture into tmp_path first.
FIXTURE_DIRS = [
    REPO_ROOT / "tests" / "data" / name for name in ("coco", "cub", "folder", "nuswide", "voc")
]


def _fixture_files() -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(REPO_ROOT)): (path.stat().st_size, path.stat().st_mtime_ns)
        for root in FIXTURE_DIRS
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="session", autouse=True)
def fixtures_stay_unwritten():
    """Fail the session when a test created, changed or removed a file of the data fixtures."""
    before = _fixture_files()
    yield
    after = _fixture_files()
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    assert not changed, (
        f"tests wrote into the shipped data fixtures: {', '.join(changed)}. Copy the fixture "
        "into tmp_path (tests/data/community_reference.py: copy_fixture) or pass cache=False, "
        "and restore the files with `git checkout tests/data` / `git clean tests/data`."
    )


@pytest.fixture(scope="session")
def tiny_demo_root(tmp_path_factory) -> Path:
    from spml_lightning.data.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(
        root, TINY_DEMO["num_train"], TINY_DEMO["num_test"], TINY_DEMO["render_size"], seed=0
    )
    return root


@pytest.fixture
def info_lines():
    """The INFO messages logged through Lightning's logger during a test (what `spml` prints)."""
    lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    # INFO whatever level an earlier test in this process left the logger at.
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def restore_determinism():
    """`--trainer.deterministic true` switches torch's global flag on; switch it back."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.fixture
def tiny_demo(tiny_demo_root):
    """A DemoDataModule over the session's tiny demo set."""
    from spml_lightning.data import DemoDataModule

    return DemoDataModule(
        root=str(tiny_demo_root), image_size=32, batch_size=16, num_workers=0, **TINY_DEMO
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_demo_root) -> dict:
    """A 2-epoch GR Loss run of the demo config on the tiny demo set.

    Fitted and tested once per session.

    Keys: ``args`` (the spml flags of the run), ``runs`` (its default_root_dir),
    ``best`` and ``final`` (checkpoints of the best and of the last epoch),
    ``test_map`` (test mAP of ``best``), ``test_results`` (every test metric of ``best``, as
    ``spml test`` printed it).
    """
    from spml_lightning.cli import run_cli

    args = demo_args(tmp_path_factory.mktemp("tiny_run"), tiny_demo_root)
    fit = run_cli(["fit", *args])
    callback = fit.trainer.checkpoint_callback
    final = Path(fit.trainer.default_root_dir) / "final.ckpt"
    fit.trainer.save_checkpoint(
        final
    )  # after the last epoch (Lightning's last.ckpt is the last *top-k* save)
    test = run_cli(["test", *args, "--ckpt_path", "best"])
    return {
        "args": args,
        "runs": Path(fit.trainer.default_root_dir),
        "best": Path(callback.best_model_path),
        "final": final,
        "test_map": test.trainer.callback_metrics["test/mAP"].item(),
        "test_results": {k: v.item() for k, v in test.trainer.callback_metrics.items()},
    }


@pytest.fixture
def bench_module(monkeypatch):
    """Import a bench/ script as a module, restoring the global torch state it changes."""
    import torch

    monkeypatch.syspath_prepend(str(REPO_ROOT / "bench"))
    threads = torch.get_num_threads()
    yield importlib.import_module
    torch.set_num_threads(threads)
