"""Per-sample loss state: ROLE, LL-Cp and EM+APL, single process.

Transcriptions are float64, written from the papers' formulas (ROLE: Cole et al.,
CVPR 2021; LL-Cp: Kim et al., CVPR 2022; EM+APL: Zhou et al., ECCV 2022) and
independent of the package.
The DDP behaviour is in test_distributed.py (and test_distributed_fit.py for a Lightning fit);
SPMLModule driving the state (binding, checkpoints, resume) is in test_state_fit.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from spml_lightning.losses import (
    AsymmetricPseudoLabelLoss,
    LargeLossPermanentCorrectionLoss,
    OnlineLabelEstimationLoss,
    PerSampleStateLoss,
)

N, B, C = 40, 8, 6


def train_observed(seed: int = 0) -> Tensor:
    """One observed positive per row of an (N, C) training set."""
    g = torch.Generator().manual_seed(seed)
    observed = torch.zeros(N, C)
    observed[torch.arange(N), torch.randint(C, (N,), generator=g)] = 1
    return observed


def logits_for(index: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(len(index), C, generator=g) * 12 - 6


def grad_of(value: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    return torch.autograd.grad(value, tensors)


# ------------------------------------------------------------------------ ROLE


def role_transcription(z: Tensor, g: Tensor, s: Tensor, k: float) -> Tensor:
    """ROLE (Cole et al., CVPR 2021) in float64 probability space; gradients reach z and g.

    With p = sigmoid(z), e = sigmoid(g) and sg() a stopped gradient:
    mean of ½·s·(-log p - log e) + ½·(cross(p, sg(e)) + cross(e, sg(p))), plus
    ½·(R(p) + R(e)), cross(x, y) = -[y·log x + (1 - y)·log(1 - x)] and R EPR's term.
    """
    p, e = torch.sigmoid(z), torch.sigmoid(g)
    pd, ed = p.detach(), e.detach()
    positive = s * (-torch.log(p) - torch.log(e))
    cross_p = -(ed * torch.log(p) + (1 - ed) * torch.log(1 - p))
    cross_e = -(pd * torch.log(e) + (1 - pd) * torch.log(1 - e))

    def reg(x: Tensor) -> Tensor:
        return (x.sum(dim=1).mean() - k) ** 2 / x.shape[1] ** 2

    return (0.5 * positive + 0.5 * (cross_p + cross_e)).mean() + 0.5 * (reg(p) + reg(e))


def test_role_value_and_gradients_match_transcription() -> None:
    observed = train_observed()
    loss = OnlineLabelEstimationLoss(expected_positives=2.9)
    loss.bind_train_set(observed)
    with torch.no_grad():  # estimates away from their initial values
        loss.label_estimates.copy_(
            torch.randn(N, C, generator=torch.Generator().manual_seed(1)) * 3
        )
    index = torch.tensor([3, 17, 3, 0, 39, 22, 8, 11])  # sample 3 twice
    logits = logits_for(index, 2).requires_grad_(True)
    value = loss(logits, observed[index], index)
    grad_z, grad_g = grad_of(value, logits, loss.label_estimates)

    z = logits.detach().double().requires_grad_(True)
    table = loss.label_estimates.detach().double().requires_grad_(True)
    ref = role_transcription(z, table[index], observed[index].double(), 2.9)
    ref_z, ref_g = grad_of(ref, z, table)
    torch.testing.assert_close(value.double(), ref.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_z.double(), ref_z, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(grad_g.double(), ref_g, rtol=1e-4, atol=1e-8)
    # Rows outside the batch get no gradient at all.
    outside = torch.ones(N, dtype=torch.bool)
    outside[index] = False
    assert torch.count_nonzero(grad_g[outside]) == 0 and torch.count_nonzero(grad_g[index]) > 0


def test_role_initial_estimates_follow_the_paper_and_seed() -> None:
    # Cole et al.'s initialisation: logit(0.995) on observed positives,
    # U(-logit(0.6), +logit(0.6)) elsewhere.
    observed = train_observed()
    loss = OnlineLabelEstimationLoss()
    torch.manual_seed(123)  # the global RNG must not matter
    loss.bind_train_set(observed)
    table = loss.label_estimates.detach()
    positive = observed.bool()
    torch.testing.assert_close(torch.sigmoid(table[positive]), torch.full((N,), 0.995))
    bound = math.log(0.6 / 0.4)
    assert table[~positive].abs().max() < bound and table[~positive].std() > bound / 3
    torch.manual_seed(999)
    again = OnlineLabelEstimationLoss()
    again.bind_train_set(observed)
    assert torch.equal(again.label_estimates, loss.label_estimates)
    other = OnlineLabelEstimationLoss(init_seed=1)
    other.bind_train_set(observed)
    assert not torch.equal(other.label_estimates, loss.label_estimates)


def test_role_rows_change_only_through_their_own_samples() -> None:
    observed = train_observed()
    loss = OnlineLabelEstimationLoss(lr_mult=10.0)
    loss.bind_train_set(observed)
    (group,) = loss.optimizer_groups(1e-3)
    assert group["lr"] == pytest.approx(1e-2) and group["params"] == [loss.label_estimates]
    optimizer = torch.optim.Adam([group])
    start = loss.label_estimates.detach().clone()
    seen = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    for step, index in enumerate([seen, seen.flip(0), seen[:4].repeat(2)]):
        optimizer.zero_grad()
        loss(logits_for(index, step), observed[index], index).backward()
        optimizer.step()
    now = loss.label_estimates.detach()
    assert torch.equal(now[8:], start[8:])  # never-seen samples keep their estimates
    assert (now[:8] != start[:8]).all(dim=1).all()


def test_role_needs_binding_and_index() -> None:
    loss = OnlineLabelEstimationLoss()
    index = torch.arange(B)
    with pytest.raises(ValueError, match="bind_train_set"):
        loss(torch.zeros(B, C), train_observed()[:B], index)
    with pytest.raises(ValueError, match="bind_train_set"):
        loss.optimizer_groups(1e-4)
    loss.bind_train_set(train_observed())
    with pytest.raises(ValueError, match="dataset indices"):
        loss(torch.zeros(B, C), train_observed()[:B])
    with pytest.raises(ValueError, match="outside"):
        loss(torch.zeros(B, C), train_observed()[:B], index + N)
    with pytest.raises(ValueError, match="one entry per row"):
        loss(torch.zeros(B, C), train_observed()[:B], index[:3])


# ----------------------------------------------------------------------- LL-Cp


def largest_unknown(z: np.ndarray, positive: np.ndarray, k: int) -> set[tuple[int, int]]:
    """The k unknown entries of largest AN loss -log(1 - p), i.e. largest logit."""
    candidates = [
        (z[b, c], b, c) for b in range(z.shape[0]) for c in range(z.shape[1]) if not positive[b, c]
    ]
    candidates.sort(reverse=True)
    return {(b, c) for _, b, c in candidates[:k]}


def ll_transcription(z: Tensor, positive: Tensor, corrected: set[tuple[int, int]]) -> Tensor:
    p = torch.sigmoid(z.double())
    fixed = torch.zeros_like(positive)
    for b, c in corrected:
        fixed[b, c] = True
    as_positive = positive | fixed
    return torch.where(as_positive, -torch.log(p), -torch.log(1 - p)).mean()


def test_ll_cp_flips_are_the_k_largest_and_persist_into_the_next_epoch() -> None:
    observed = train_observed()
    loss = LargeLossPermanentCorrectionLoss(delta=0.05)  # k = ceil(8 * 6 * 0.05) = 3
    loss.bind_train_set(observed)
    index = torch.tensor([5, 9, 12, 30, 31, 2, 7, 20])
    logits = logits_for(index, 0)

    loss.set_epoch(0, 8)
    loss.train()
    first = loss(logits, observed[index], index)
    assert not loss.corrections.any()  # nothing modified in the first epoch
    torch.testing.assert_close(
        first.double(), ll_transcription(logits, observed[index].bool(), set())
    )

    loss.set_epoch(1, 8)
    value = loss(logits, observed[index], index)
    flips = largest_unknown(logits.numpy(), observed[index].bool().numpy(), 3)
    torch.testing.assert_close(
        value.double(), ll_transcription(logits, observed[index].bool(), flips)
    )
    stored = {(int(index[b]), c) for b, c in flips}
    assert {tuple(map(int, e)) for e in loss.corrections.nonzero()} == stored

    # Next epoch, the same samples in another order: the flips are positives now,
    # and 3 more entries are corrected among the remaining unknowns.
    loss.set_epoch(2, 8)
    order = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])
    index2, logits2 = index[order], logits[order]
    positive2 = observed[index2].bool() | loss.corrections[index2]
    assert int(positive2.sum()) == B + 3
    value2 = loss(logits2, observed[index2], index2)
    new = largest_unknown(logits2.numpy(), positive2.numpy(), 3)
    torch.testing.assert_close(value2.double(), ll_transcription(logits2, positive2, new))
    assert int(loss.corrections.sum()) == 6

    # Evaluation mode reads the corrections but never writes them.
    loss.eval()
    loss(logits2, observed[index2], index2)
    assert int(loss.corrections.sum()) == 6


def test_ll_cp_rate_is_constant_after_the_first_epoch() -> None:
    loss = LargeLossPermanentCorrectionLoss()
    assert [loss.set_epoch(e, 10)["ll_modified_fraction"] for e in (0, 1, 5)] == [0.0, 0.001, 0.001]
    assert loss.num_modified(8 * 20) == 1  # ceil(160 * 0.001)


# ---------------------------------------------------------------------- EM+APL


def test_apl_pass_happens_after_the_warmup_epochs() -> None:
    loss = AsymmetricPseudoLabelLoss(warmup_epochs=3)
    with pytest.raises(ValueError, match="bind_train_set"):
        loss.update_from_train_scores(torch.arange(N), torch.zeros(N, C))
    loss.bind_train_set(train_observed())
    # 0-based epoch E starts right after 1-based epoch E: passes after epochs 3..T-1.
    assert [loss.set_epoch(e, 6)["apl_active"] for e in range(6)] == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="warmup_epochs"):
        loss.set_epoch(0, 3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        AsymmetricPseudoLabelLoss(warmup_epochs=0)


def independent_apl_pass(
    scores: np.ndarray, candidates: np.ndarray, assigned: np.ndarray, quota: list[int]
) -> np.ndarray:
    """Boolean (N, C) of the entries a pass labels: per class the quota lowest-scored candidates."""
    chosen = np.zeros_like(candidates)
    for c in range(scores.shape[1]):
        rows = [n for n in range(scores.shape[0]) if candidates[n, c] and not assigned[n, c]]
        rows.sort(key=lambda n: scores[n, c])
        chosen[rows[: quota[c]], c] = True
    return chosen


def test_apl_assigns_the_stated_number_of_lowest_scored_pseudo_labels_per_class() -> None:
    observed = train_observed()
    loss = AsymmetricPseudoLabelLoss(warmup_epochs=2)
    loss.bind_train_set(observed)
    epochs = 6
    unknown_per_class = (observed == 0).sum(dim=0).tolist()
    quota = [int(0.9 * u / (epochs - 2)) for u in unknown_per_class]
    assert min(quota) > 0
    loss.set_epoch(2, epochs)
    assert loss.per_class_quota() == quota

    candidates = (observed == 0).numpy()
    assigned = np.zeros_like(candidates)
    rng = np.random.default_rng(0)
    for epoch in range(2, epochs):
        loss.set_epoch(epoch, epochs)
        assert loss.needs_train_scores()
        logits = torch.from_numpy(rng.normal(size=(N, C)).astype(np.float32))
        # The shard arrives in any order, with padding repeats (a DistributedSampler's).
        perm = torch.from_numpy(rng.permutation(N))
        index = torch.cat([perm, perm[:3]])
        logged = loss.update_from_train_scores(index, logits[index])
        expected = independent_apl_pass(torch.sigmoid(logits).numpy(), candidates, assigned, quota)
        now = (loss.pseudo_labels != -1).numpy()
        np.testing.assert_array_equal(now & ~assigned, expected)
        assert now[~candidates].sum() == 0  # observed positives are never pseudo-labelled
        torch.testing.assert_close(
            loss.pseudo_labels[torch.from_numpy(expected)],
            torch.sigmoid(logits)[torch.from_numpy(expected)],
        )
        assert (expected.sum(axis=0) == np.array(quota)).all()
        assert logged["apl_assigned"] == sum(quota)
        assigned |= expected
    # After T - warm-up passes 90 % of every class's unknowns are labelled, less
    # what int() truncates (under one per pass).
    total = assigned.sum(axis=0)
    assert (total <= 0.9 * np.array(unknown_per_class)).all()
    assert (total > 0.9 * np.array(unknown_per_class) - (epochs - 2)).all()


def test_apl_loss_matches_transcription() -> None:
    observed = train_observed()
    loss = AsymmetricPseudoLabelLoss(alpha=0.1, beta=0.9, warmup_epochs=1)
    loss.bind_train_set(observed)
    loss.set_epoch(1, 3)
    loss.update_from_train_scores(
        torch.arange(N), torch.randn(N, C, generator=torch.Generator().manual_seed(3))
    )
    index = torch.arange(0, N, 5)
    logits = logits_for(index, 4).requires_grad_(True)
    value = loss(logits, observed[index], index)
    (grad,) = grad_of(value, logits)

    soft = loss.pseudo_labels[index].double()
    labelled = soft >= 0
    assert labelled.any() and (~labelled & (observed[index] == 0)).any()
    z = logits.detach().double().requires_grad_(True)
    p = torch.sigmoid(z)
    s = observed[index].double()
    apl = 0.9 * -(soft * torch.log(p) + (1 - soft) * torch.log(1 - p))
    em = 0.1 * (p * torch.log(p) + (1 - p) * torch.log(1 - p))
    ref = torch.where(s > 0, -torch.log(p), torch.where(labelled, apl, em)).mean()
    (ref_grad,) = grad_of(ref, z)
    torch.testing.assert_close(value.double(), ref.detach(), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------- the shared mechanism


@pytest.mark.parametrize(
    "factory",
    [OnlineLabelEstimationLoss, LargeLossPermanentCorrectionLoss, AsymmetricPseudoLabelLoss],
)
def test_state_is_saved_and_lazily_restored(factory) -> None:
    observed = train_observed()
    trained = factory()
    trained.bind_train_set(observed)
    for tensor in trained.state_dict().values():  # a state unlike the initial one
        tensor.copy_(
            torch.rand(tensor.shape) > 0.5
            if tensor.dtype == torch.bool
            else torch.rand(tensor.shape)
        )
    state = trained.state_dict()
    assert set(state) == set(factory.sample_state) and all(t.shape[0] == N for t in state.values())

    fresh = factory()  # never bound: e.g. SPMLModule.load_from_checkpoint for inference
    assert fresh.num_train_samples is None and fresh.state_dict() == {}
    fresh.load_state_dict(state)
    assert fresh.num_train_samples == N
    for key, tensor in state.items():
        assert torch.equal(fresh.state_dict()[key], tensor), key

    resumed = factory()  # bound first, then restored: a resumed fit
    resumed.bind_train_set(observed)
    resumed.load_state_dict(state)
    for key, tensor in state.items():
        assert torch.equal(resumed.state_dict()[key], tensor), key

    other = factory()
    other.bind_train_set(observed[:10])
    with pytest.raises(RuntimeError, match="training set the checkpoint was trained on"):
        other.load_state_dict(state)


def test_bind_rejects_bad_observed_matrices() -> None:
    loss = LargeLossPermanentCorrectionLoss()
    with pytest.raises(ValueError, match="only 0"):
        loss.bind_train_set(torch.tensor([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="non-empty"):
        loss.bind_train_set(torch.zeros(0, 3))
    assert issubclass(LargeLossPermanentCorrectionLoss, PerSampleStateLoss)
