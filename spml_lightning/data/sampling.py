"""A training order that is a function of (seed, epoch) and resumes mid-epoch.

A run resumed from a mid-epoch checkpoint can only end where the uninterrupted
run ends if the rest of the epoch sees the same images in the same order with
the same augmentation. Torch's default shuffling cannot give that: the order
and the worker seeds are drawn from the global random state when each epoch's
iterator is created, and random flips depend on which worker happens to load
an image. Here instead:

* the order of epoch ``e`` is ``randperm(n)`` of a generator seeded with
  ``seed + e`` (the rule of ``DistributedSampler``, so the global order does not
  depend on the number of processes), padded and sharded over the ranks the
  same way;
* every image of epoch ``e`` gets its own augmentation seed from that same
  generator, and ``SeededDataset`` loads it under that seed, so random
  augmentation depends on neither the worker count nor the rank count;
* ``ResumableDataLoader`` counts the batches it has handed out and exposes
  ``state_dict`` / ``load_state_dict``, which Lightning stores in every
  checkpoint and restores on resume: the resumed epoch continues with the
  first batch the interrupted run had not trained on.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ResumableDataLoader", "ResumableShuffleSampler", "SeededDataset"]

SampleKey = tuple[int, int]
"""``(dataset index, augmentation seed)``, what ``ResumableShuffleSampler`` yields."""


def default_shuffle_seed() -> int:
    """The seed Lightning gives the samplers it injects: ``seed_everything``'s, else 0.

    Every rank must shuffle alike, so the seed cannot come from a per-process
    random state.
    """
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


@contextmanager
def _seeded_random_state(seed: int) -> Iterator[None]:
    """Run a block under ``seed`` (torch CPU, numpy, ``random``), then restore the states.

    Only the CPU generator of torch is touched: with ``num_workers=0`` images
    load in the training process, whose CUDA generator (dropout) must go on
    undisturbed.
    """
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class SeededDataset(Dataset):
    """Loads item ``index`` of a dataset under its own random seed.

    Keys are ``(index, seed)`` pairs (as ``ResumableShuffleSampler`` yields
    them) or plain indices (loaded without seeding). Other attributes are
    those of the wrapped dataset (``loader.dataset.observed`` still works).

    Args:
        dataset: any map-style dataset.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | SampleKey) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            with _seeded_random_state(seed):
                return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found here; dunders stay ours so that the
        # DataLoader does not pick up e.g. a __getitems__ that would skip the seeding.
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableShuffleSampler(DistributedSampler):
    """Shuffled ``(index, augmentation seed)`` keys of one rank, by (seed, epoch).

    The order of epoch ``e`` is ``DistributedSampler``'s (``randperm`` seeded
    with ``seed + e``, padded by repeating its head to a multiple of the number
    of ranks, rank ``r`` taking every ``num_replicas``-th key from ``r``); the
    augmentation seeds are drawn from the same generator right after it. Call
    :meth:`set_epoch` before each epoch (Lightning does).

    Args:
        dataset: the dataset (only its length is used).
        num_replicas: number of processes sharing the epoch.
        rank: this process.
        seed: shuffling seed; default ``seed_everything``'s (``PL_GLOBAL_SEED``), else 0.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int | None = None
    ) -> None:
        seed = default_shuffle_seed() if seed is None else int(seed)
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self._resume_at: tuple[int, int] | None = None
        self.pass_epoch = 0
        self.pass_start = 0

    def resume(self, epoch: int, position: int) -> None:
        """Start the next pass over ``epoch`` at ``position`` of its padded global order.

        ``position`` counts keys of all ranks together (batches x batch size x
        ranks). The next pass over any other epoch starts from the beginning.
        """
        self._resume_at = (int(epoch), int(position))

    def _global_order(self) -> tuple[list[int], list[int]]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        size = len(self.dataset)  # type: ignore[arg-type]
        order = torch.randperm(size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (len(order),), generator=generator).tolist()
        padding = self.total_size - len(order)
        if padding > 0:
            order += (order * math.ceil(padding / len(order)))[:padding]
        return order, seeds

    def __iter__(self) -> Iterator[SampleKey]:  # type: ignore[override]
        start = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            start = min(self._resume_at[1], self.total_size)
        self._resume_at = None
        self.pass_epoch, self.pass_start = self.epoch, start
        order, seeds = self._global_order()
        mine = order[start:][self.rank :: self.num_replicas]
        return iter([(index, seeds[index]) for index in mine])


class ResumableDataLoader(DataLoader):
    """A shuffling DataLoader whose position within the epoch survives a restart.

    Shuffles with :class:`ResumableShuffleSampler` and loads through
    :class:`SeededDataset`. ``state_dict()`` records the epoch and how far into
    its global order the batches handed out so far reach; Lightning saves it in
    every checkpoint and passes it to ``load_state_dict`` on resume, and the
    next pass over that epoch continues from there.

    The underlying iterator (and its workers) is created at the first
    ``next()``, not at ``iter()``: Lightning calls ``iter()`` before it sets the
    sampler's epoch when it resumes.

    Args:
        dataset: the training dataset.
        batch_size: keys per batch and per rank.
        sampler: replaces the shuffling sampler (Lightning does so for
            ``overfit_batches``); a plain sampler is not resumable.
        num_replicas: number of processes sharing each epoch.
        rank: this process.
        seed: shuffling seed; default ``seed_everything``'s, else 0.
        **kwargs: the other ``DataLoader`` arguments (``num_workers``, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        sampler: Any = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if sampler is None:
            sampler = ResumableShuffleSampler(
                dataset, num_replicas=num_replicas, rank=rank, seed=seed
            )
        if kwargs.pop("shuffle", None):
            raise ValueError("ResumableDataLoader always shuffles; do not pass shuffle=True.")
        # Each iterator draws a worker base seed; from a private generator, that
        # draw leaves the training process's global random stream alone.
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(SeededDataset(dataset), batch_size=batch_size, sampler=sampler, **kwargs)
        self._state: dict[str, int] = {}
        self._resumed_from: dict[str, int] | None = None  # a state to continue, not yet checked

    def __iter__(self) -> Iterator[Any]:
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        resumed, self._resumed_from = self._resumed_from, None
        sampler = self.sampler
        if (
            resumed is not None
            and isinstance(sampler, ResumableShuffleSampler)
            and int(resumed["epoch"]) == sampler.epoch
        ):
            self._check_resumable_step(resumed)
        handed_out = 0
        for batch in super().__iter__():
            handed_out += 1
            # Recorded before the batch is handed out: a checkpoint written after
            # training on it must resume after it.
            self._state = self._position_after(handed_out)
            yield batch

    def _position_after(self, batches: int) -> dict[str, int]:
        sampler = self.sampler
        if not isinstance(sampler, ResumableShuffleSampler):
            return {}
        step = self.batch_size * sampler.num_replicas
        return {
            "epoch": sampler.pass_epoch,
            "position": min(sampler.pass_start + batches * step, sampler.total_size),
            "seed": sampler.seed,
            "num_replicas": sampler.num_replicas,
            "batch_size": int(self.batch_size or 1),
        }

    def _check_resumable_step(self, state_dict: dict[str, int]) -> None:
        """Refuse to finish an interrupted epoch in larger steps than it was started in.

        Lightning counts the rest of a resumed epoch in batches: it runs the
        epoch's number of batches *at the new size* less the batches the
        checkpoint had done. With more images per step (a larger batch, more
        processes) those batches end before the epoch's images do, and the
        rest of the epoch would never be trained on. A smaller step is safe (the
        loader runs out first, having handed out every image once), and so is
        any change at an epoch boundary (the resumed run starts the next epoch,
        and this is not called).
        """
        sampler = self.sampler
        assert isinstance(sampler, ResumableShuffleSampler)
        old_batch = state_dict.get("batch_size")  # not recorded by older checkpoints
        position, total = int(state_dict["position"]), sampler.total_size
        if old_batch is None or not 0 < position < total:
            return
        old_replicas = int(state_dict["num_replicas"])
        new_batch = int(self.batch_size or 1)
        if new_batch * sampler.num_replicas <= int(old_batch) * old_replicas:
            return
        epoch = int(state_dict["epoch"])
        raise ValueError(
            f"This fit resumes a checkpoint saved in the middle of epoch {epoch} (after {position} "
            f"of its {total} images) with batch_size {old_batch} on {old_replicas} process(es); "
            f"now batch_size {new_batch} on {sampler.num_replicas}. Lightning counts the rest of "
            "the epoch in the checkpoint's batches, so with larger batches it would end early "
            "and part of the epoch would never be trained on. Finish the epoch with the "
            f"checkpoint's batch size (--data.init_args.batch_size {old_batch}; adding "
            f"--trainer.max_epochs {epoch + 1} stops right after it), then resume with the new "
            "one: a checkpoint saved at the end of an epoch resumes with any batch size, and a "
            "smaller batch size is fine mid-epoch too."
        )

    def state_dict(self) -> dict[str, int]:
        """Epoch, shuffling seed, ranks, batch size and the global position the batches reach."""
        return dict(self._state)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Continue the recorded epoch where the recorded position left it."""
        sampler = self.sampler
        if not state_dict or not isinstance(sampler, ResumableShuffleSampler):
            return
        if state_dict["num_replicas"] != sampler.num_replicas:
            warnings.warn(
                f"Resuming on {sampler.num_replicas} processes a run that had "
                f"{state_dict['num_replicas']}: the rest of the interrupted epoch is re-sharded, "
                "so the run will not match an uninterrupted one exactly.",
                stacklevel=2,
            )
        # Checked when the epoch starts: only then is it known whether the resumed run
        # continues the recorded epoch (a checkpoint saved at an epoch's end resumes the next).
        self._resumed_from = dict(state_dict)
        sampler.seed = int(state_dict["seed"])
        sampler.resume(state_dict["epoch"], state_dict["position"])
        self._state = dict(state_dict)
