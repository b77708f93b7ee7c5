"""The training order: a function of (seed, epoch), sharded like DistributedSampler, resumable.

Resumable mid-epoch: the position within the epoch is part of the loader's state.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from spml_lightning.data.sampling import ResumableDataLoader, ResumableShuffleSampler, SeededDataset


class RandomItems(Dataset):
    """Item i is (i, a draw from torch's global generator): the seed it was loaded under."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "draw": torch.rand(())}


def keys(sampler: ResumableShuffleSampler, epoch: int) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_order_is_distributed_samplers_and_depends_on_seed_and_epoch():
    data = RandomItems(11)
    for replicas, rank in ((1, 0), (3, 0), (3, 2)):
        ours = ResumableShuffleSampler(data, num_replicas=replicas, rank=rank, seed=5)
        theirs = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=True, seed=5)
        theirs.set_epoch(4)
        assert [index for index, _ in keys(ours, 4)] == list(theirs)
    sampler = ResumableShuffleSampler(data, seed=5)
    assert keys(sampler, 0) == keys(ResumableShuffleSampler(data, seed=5), 0)
    assert keys(sampler, 0) != keys(sampler, 1)
    assert keys(sampler, 0) != keys(ResumableShuffleSampler(data, seed=6), 0)


def test_ranks_share_one_global_order_and_seeds():
    data = RandomItems(10)
    single = dict(keys(ResumableShuffleSampler(data, seed=1), 3))
    for replicas in (2, 3, 4):
        shards = [
            keys(ResumableShuffleSampler(data, replicas, rank, seed=1), 3)
            for rank in range(replicas)
        ]
        union = {key for shard in shards for key in shard}
        assert {index for index, _ in union} == set(range(10))
        assert all(
            single[index] == seed for index, seed in union
        )  # same augmentation seed per image


def test_seeded_items_do_not_depend_on_workers_and_leave_the_global_state_alone():
    data = RandomItems(12)
    batches = {}
    for workers in (0, 2):
        loader = ResumableDataLoader(data, batch_size=4, num_workers=workers, seed=0)
        loader.sampler.set_epoch(1)
        state = torch.get_rng_state()
        batches[workers] = list(loader)
        if workers == 0:
            assert torch.equal(state, torch.get_rng_state())
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["draw"], b["draw"])
    assert SeededDataset(data)[(3, 7)]["draw"] == SeededDataset(data)[(3, 7)]["draw"]


@pytest.mark.parametrize("replicas", [1, 2])
def test_resume_continues_with_the_next_batch(replicas):
    data = RandomItems(22)
    epoch = 2

    def loaders():
        return [
            ResumableDataLoader(data, batch_size=3, num_replicas=replicas, rank=r, seed=9)
            for r in range(replicas)
        ]

    uninterrupted = []
    for loader in loaders():
        loader.sampler.set_epoch(epoch)
        uninterrupted.append([batch["index"].tolist() for batch in loader])

    interrupted = loaders()
    states = []
    for loader in interrupted:
        loader.sampler.set_epoch(epoch)
        iterator = iter(loader)
        next(iterator), next(iterator)  # two batches trained, then the crash
        states.append(loader.state_dict())
    assert states[0] == {
        "epoch": epoch,
        "position": 2 * 3 * replicas,
        "seed": 9,
        "num_replicas": replicas,
        "batch_size": 3,
    }

    for rank, loader in enumerate(loaders()):
        loader.load_state_dict(states[rank])
        assert loader.state_dict() == states[rank]
        loader.sampler.set_epoch(epoch)
        rest = [batch["index"].tolist() for batch in loader]
        assert rest == uninterrupted[rank][2:]
        # The next epoch starts from its beginning again.
        loader.sampler.set_epoch(epoch + 1)
        assert len(list(loader)) == len(loader)


def test_resume_state_of_another_epoch_is_ignored():
    data = RandomItems(9)
    loader = ResumableDataLoader(data, batch_size=2, seed=0)
    loader.load_state_dict({"epoch": 4, "position": 6, "seed": 0, "num_replicas": 1})
    loader.sampler.set_epoch(5)
    assert len(list(loader)) == 5


def test_shuffle_argument_is_refused():
    with pytest.raises(ValueError, match="always shuffles"):
        ResumableDataLoader(RandomItems(3), shuffle=True)
