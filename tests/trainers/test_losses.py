"""The contrastive loss against a hand computation (plain Python loops, no shared code)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ret2_plugin.trainers.losses import ContrastiveLoss, similarity, target_matrix

pytestmark = pytest.mark.unit


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _row_ce(logits: list[float], positives: list[int]) -> float:
    m = max(logits)
    log_z = m + math.log(sum(math.exp(v - m) for v in logits))
    return -sum((logits[j] - log_z) / len(positives) for j in positives)


def _hand_loss(q, d, q_pos: list[set[int]], d_ids: list[int], scale: float, symmetric: bool = True) -> float:
    """InfoNCE written out: q->d rows over all documents, d->q rows over all queries."""
    qn = [[x / math.sqrt(_dot(v, v)) for x in v] for v in q]
    dn = [[x / math.sqrt(_dot(v, v)) for x in v] for v in d]
    s = [[scale * _dot(a, b) for b in dn] for a in qn]
    q_rows = [_row_ce(s[i], [j for j, did in enumerate(d_ids) if did in q_pos[i]]) for i in range(len(q))]
    loss_q = sum(q_rows) / len(q_rows)
    if not symmetric:
        return loss_q
    d_rows = []
    for j, did in enumerate(d_ids):
        pos = [i for i in range(len(q)) if did in q_pos[i]]
        if pos:  # a document that is nobody's positive (hard negative) has no d->q row
            d_rows.append(_row_ce([s[i][j] for i in range(len(q))], pos))
    return (loss_q + sum(d_rows) / len(d_rows)) / 2


def _pos_tensor(q_pos: list[list[int]]) -> torch.Tensor:
    width = max(len(p) for p in q_pos)
    return torch.tensor([p + [-1] * (width - len(p)) for p in q_pos])


@pytest.mark.parametrize("symmetric", [True, False])
def test_single_vector_loss_matches_hand_computation_with_soft_multi_positives(symmetric: bool) -> None:
    torch.manual_seed(0)
    q, d = torch.randn(3, 5), torch.randn(5, 5)
    # doc 0 and doc 2 are the same target (id 10) -> query 0's target is split over both columns;
    # query 2 has two positives (11, 12); doc 4 (id 99) is a hard negative of nobody.
    q_pos = [[10], [11], [11, 12]]
    d_ids = [10, 11, 10, 12, 99]
    loss = ContrastiveLoss(temperature=0.1, symmetric=symmetric)
    out = loss(q, d, _pos_tensor(q_pos), torch.tensor(d_ids))
    expected = _hand_loss(q.tolist(), d.tolist(), [set(p) for p in q_pos], d_ids, 10.0, symmetric)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.global_loss.item() == pytest.approx(expected, rel=1e-5)
    assert (out.loss_d2q is None) == (not symmetric)


def test_soft_targets_differ_from_treating_duplicates_as_negatives() -> None:
    torch.manual_seed(1)
    q, d = torch.randn(2, 4), torch.randn(3, 4)
    loss = ContrastiveLoss(temperature=0.1, symmetric=False)
    soft = loss(q, d, _pos_tensor([[10], [11]]), torch.tensor([10, 11, 10])).loss.item()
    hard = loss(q, d, _pos_tensor([[10], [11]]), torch.tensor([10, 11, 12])).loss.item()
    assert soft != pytest.approx(hard)
    assert soft == pytest.approx(_hand_loss(q.tolist(), d.tolist(), [{10}, {11}], [10, 11, 10], 10.0, False), rel=1e-5)


def test_maxsim_similarity_matches_loops() -> None:
    torch.manual_seed(2)
    q = F.normalize(torch.randn(2, 3, 4), dim=-1)
    d = F.normalize(torch.randn(4, 5, 4), dim=-1)
    got = similarity(q, d)
    for i in range(2):
        for j in range(4):
            want = sum(max(_dot(q[i, a].tolist(), d[j, b].tolist()) for b in range(5)) for a in range(3))
            assert got[i, j].item() == pytest.approx(want, abs=1e-5)


def test_multi_vector_loss_uses_maxsim_in_both_directions() -> None:
    torch.manual_seed(3)
    q, d = torch.randn(2, 3, 4), torch.randn(3, 2, 4)
    q_pos, d_ids = [[0], [1]], [0, 1, 2]
    out = ContrastiveLoss(temperature=0.5)(q, d, _pos_tensor(q_pos), torch.tensor(d_ids))
    s = similarity(F.normalize(q, dim=-1), F.normalize(d, dim=-1)) * 2.0
    lq = (_row_ce(s[0].tolist(), [0]) + _row_ce(s[1].tolist(), [1])) / 2
    ld = (_row_ce(s[:, 0].tolist(), [0]) + _row_ce(s[:, 1].tolist(), [1])) / 2  # doc 2: nobody's positive
    assert out.loss.item() == pytest.approx((lq + ld) / 2, rel=1e-5)


def test_target_matrix_ignores_padding() -> None:
    t = target_matrix(torch.tensor([[3, -1], [-1, -1]]), torch.tensor([3, -1, 4]))
    assert t.tolist() == [[True, False, False], [False, False, False]]


def test_learnable_temperature_gets_a_gradient_and_fixed_one_is_a_buffer() -> None:
    q, d = torch.randn(4, 8), torch.randn(4, 8)
    pos, ids = torch.arange(4)[:, None], torch.arange(4)
    learn = ContrastiveLoss(temperature=0.07, learnable_temperature=True)
    learn(q, d, pos, ids).loss.backward()
    assert learn.log_scale.grad is not None and learn.log_scale.grad.abs() > 0
    fixed = ContrastiveLoss(temperature=0.07)
    assert list(fixed.parameters()) == [] and "log_scale" in fixed.state_dict()


def test_accuracy_counts_top1_hits() -> None:
    d = torch.eye(4)
    q = torch.eye(4)[[0, 1, 3, 2]]  # queries 2 and 3 point at each other's positive
    out = ContrastiveLoss(temperature=0.1)(q, d, torch.arange(4)[:, None], torch.arange(4))
    assert out.accuracy.item() == pytest.approx(0.5)


def test_bad_temperature_is_refused() -> None:
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveLoss(temperature=0)
