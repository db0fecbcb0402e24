import copy
import math

import pytest
import torch
from torch_geometric.data import Data

from refine_fast.metrics import (
    DEFAULT_RATIOS, EvalGraphs, acc_at_ratio, acc_auc, correct_subset, edge_auroc, evaluate_explanations,
    fidelity, flatten_importances, ground_truth_metrics, needs_ground_truth, recall_at_n, topk_edge_mask,
)
from refine_fast.ops.segment_select import select_counts

pytestmark = pytest.mark.usefixtures("single_thread")


# ---- a plain per-graph loop: the definition the vectorized metrics must equal -------------------

def _top(imp, k):
    return sorted(range(imp.numel()), key=lambda i: (-float(imp[i]), i))[:k]


def _k(num_edges, ratio):
    return max(math.ceil(ratio * num_edges - 1e-9), 1) if num_edges else 0


def _pred(model, x, edge_index, edge_attr):
    out = model(x, edge_index, edge_attr, torch.zeros(x.size(0), dtype=torch.long))
    return int(out.argmax(-1))


def _subgraph_pred(model, data, edges, drop_isolated=True):
    edges = torch.tensor(sorted(edges), dtype=torch.long)
    ei = data.edge_index[:, edges].view(2, -1)
    ea = data.edge_attr[edges].view(-1, data.edge_attr.size(1))
    if not drop_isolated or ei.numel() == 0:
        return _pred(model, data.x, ei, ea)
    nodes = sorted(set(ei.view(-1).tolist()))
    relabel = {n: i for i, n in enumerate(nodes)}
    ei = torch.tensor([[relabel[int(v)] for v in row] for row in ei], dtype=torch.long).view(2, -1)
    return _pred(model, data.x[nodes], ei, ea)


def _loop_acc(model, graphs, imps, ratio):
    hits = []
    for data, imp in zip(graphs, imps):
        full = data.full_pred
        hits.append(_subgraph_pred(model, data, _top(imp, _k(data.num_edges, ratio))) == full)
    return sum(hits) / len(hits)


def _loop_recall(graphs, imps, n):
    recalls, ceilings = [], []
    for data, imp in zip(graphs, imps):
        gt = data.edge_gt.bool()
        if gt.sum() == 0:
            continue
        recalls.append(sum(bool(gt[i]) for i in _top(imp, n)) / int(gt.sum()))
        ceilings.append(min(n, int(gt.sum())) / int(gt.sum()))
    return sum(recalls) / len(recalls), sum(ceilings) / len(ceilings)


def _pair_auc(score, label):
    pos, neg = score[label], score[~label]
    if pos.numel() == 0 or neg.numel() == 0:
        return None
    diff = pos.view(-1, 1) - neg.view(1, -1)
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


@pytest.fixture(scope="module")
def graphs(ba3_small):
    """Double precision graphs plus an edgeless graph and a one-edge graph (degenerate segments)."""
    out = [Data(x=d.x.double(), edge_index=d.edge_index, edge_attr=d.edge_attr.double(), y=d.y,
                edge_gt=d.edge_gt) for d in ba3_small[::3]]
    out.insert(3, Data(x=torch.rand(4, 4, dtype=torch.double), edge_index=torch.zeros(2, 0, dtype=torch.long),
                       edge_attr=torch.zeros(0, 1, dtype=torch.double), y=torch.tensor([1]),
                       edge_gt=torch.zeros(0, dtype=torch.bool)))
    out.insert(7, Data(x=torch.rand(3, 4, dtype=torch.double), edge_index=torch.tensor([[0], [2]]),
                       edge_attr=torch.ones(1, 1, dtype=torch.double), y=torch.tensor([0]),
                       edge_gt=torch.ones(1, dtype=torch.bool)))
    return out


@pytest.fixture(scope="module")
def model(ba3_model, graphs):
    """The double-precision model; each graph caches its full-graph prediction as ``full_pred``."""
    model = copy.deepcopy(ba3_model).double()
    for data in graphs:
        data.full_pred = _pred(model, data.x, data.edge_index, data.edge_attr)
    return model


@pytest.mark.parametrize("levels", [None, 3])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.7, 1.0])
def test_acc_at_ratio_equals_per_graph_loop(model, graphs, random_importances, ratio, levels):
    imps = random_importances(graphs, seed=1, levels=levels)
    assert acc_at_ratio(model, graphs, imps, ratio) == pytest.approx(_loop_acc(model, graphs, imps, ratio))


def test_acc_auc_and_flat_input(model, graphs, random_importances):
    imps = random_importances(graphs, seed=2)
    result = acc_auc(model, graphs, imps)
    expected = {r: _loop_acc(model, graphs, imps, r) for r in DEFAULT_RATIOS}
    assert result["acc"] == pytest.approx(expected)
    assert result["acc_auc"] == pytest.approx(sum(expected.values()) / 10)
    assert result["acc"][1.0] == 1.0  # the whole graph keeps its prediction
    flat = torch.cat(imps)
    ptr = EvalGraphs.of(graphs).edge_ptr
    assert acc_auc(model, graphs, flat, ptr=ptr) == result


def test_one_model_call_per_ratio(model, graphs, random_importances):
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        acc_auc(model, graphs, random_importances(graphs))
    finally:
        handle.remove()
    assert len(calls) == len(DEFAULT_RATIOS) + 1  # + the full-graph prediction


def test_topk_counts_ties_and_float_noise():
    ptr = torch.tensor([0, 10, 10, 13])
    imp = torch.tensor([1.0] * 10 + [0.5, 0.5, 0.9])
    mask = topk_edge_mask(imp, ptr, 0.7)
    assert mask[:10].tolist() == [True] * 7 + [False] * 3  # 0.7 * 10 -> 7, ties to the lower index
    assert mask[10:].tolist() == [True, True, True]  # ceil(0.7 * 3) = 3
    assert topk_edge_mask(imp, ptr, 0.01).sum() == 2  # at least one edge per non-empty graph
    assert select_counts(torch.tensor([0, 0, 1, 11]), 0.3).tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="ratio"):
        topk_edge_mask(imp, ptr, 0.0)


def test_fidelity_equals_loop(model, graphs, random_importances):
    imps = random_importances(graphs, seed=3)
    fid_plus, fid_minus = fidelity(model, graphs, imps, 0.4)
    assert fid_minus == pytest.approx(1 - _loop_acc(model, graphs, imps, 0.4))
    keep = []
    for data, imp in zip(graphs, imps):
        full = data.full_pred
        top = set(_top(imp, _k(data.num_edges, 0.4)))
        rest = [i for i in range(data.num_edges) if i not in top]
        keep.append(_subgraph_pred(model, data, rest, drop_isolated=False) == full)
    assert fid_plus == pytest.approx(1 - sum(keep) / len(keep))


@pytest.mark.parametrize("levels", [None, 2])
def test_recall_and_auroc_equal_loop(graphs, random_importances, levels):
    imps = random_importances(graphs, seed=4, levels=levels)
    recall, ceiling = _loop_recall(graphs, imps, 5)
    result = recall_at_n(graphs, imps, n=5)
    assert result["recall"] == pytest.approx(recall) and result["ceiling"] == pytest.approx(ceiling)
    aucs = [_pair_auc(imp, d.edge_gt.bool()) for d, imp in zip(graphs, imps)]
    aucs = [a for a in aucs if a is not None]
    pooled = _pair_auc(torch.cat(imps), torch.cat([d.edge_gt.bool() for d in graphs]))
    result = edge_auroc(graphs, imps)
    assert result["auroc_per_graph"] == pytest.approx(sum(aucs) / len(aucs))
    assert result["auroc_pooled"] == pytest.approx(pooled)
    assert result["num_graphs"] == len(aucs)


class EdgeCount(torch.nn.Module):
    """Predicts class 1 when a graph has at least ``threshold`` edges: removing a graph's ground-truth
    edges changes its prediction exactly when they take it below the threshold."""

    def __init__(self, threshold: int):
        super().__init__()
        self.threshold = threshold

    def forward(self, x, edge_index, edge_attr=None, batch=None):
        batch = torch.zeros(x.size(0), dtype=torch.long) if batch is None else batch
        count = torch.zeros(int(batch.max()) + 1, dtype=x.dtype).index_add_(
            0, batch[edge_index[0]], torch.ones(edge_index.size(1), dtype=x.dtype))
        return torch.stack([torch.full_like(count, self.threshold - 0.5), count], dim=1)


def test_needs_ground_truth_and_its_auroc_equal_loop(graphs, random_importances):
    model = EdgeCount(sorted(d.num_edges for d in graphs)[len(graphs) // 2])
    needed = []
    for data in graphs:
        gt = data.edge_gt.bool()
        rest = [i for i in range(data.num_edges) if not gt[i]]
        full = _pred(model, data.x, data.edge_index, data.edge_attr)
        needed.append(bool(gt.any()) and _subgraph_pred(model, data, rest) != full)
    assert 0 < sum(needed) < len(graphs)  # both kinds, or the test could not fail
    assert needs_ground_truth(model, graphs).tolist() == needed
    imps = random_importances(graphs, seed=5)
    aucs = [_pair_auc(imp, d.edge_gt.bool()) for d, imp, n in zip(graphs, imps, needed) if n]
    aucs = [a for a in aucs if a is not None]
    result = ground_truth_metrics(graphs, imps, n=None, model=model)
    assert result["auroc_needed"] == pytest.approx(sum(aucs) / len(aucs))
    assert result["num_graphs_needed"] == len(aucs)
    assert "auroc_needed" not in ground_truth_metrics(graphs, imps, n=None)


def test_perfect_importances_reach_ceiling(graphs):
    imps = [d.edge_gt.float() for d in graphs]
    result = recall_at_n(graphs, imps, n=5)
    assert result["recall"] == pytest.approx(result["ceiling"])
    assert edge_auroc(graphs, imps)["auroc_per_graph"] == pytest.approx(1.0)


def test_official_recall_ceiling(ba3_official, ba3_official_path):
    from refine_fast.datasets import load_ba3motif_official
    official = ba3_official
    imps = [d.edge_gt.float() for d in official]
    assert recall_at_n(official, imps, 5)["ceiling"] == pytest.approx(0.304, abs=5e-4)
    both = load_ba3motif_official(ba3_official_path, both_directions=True)
    assert recall_at_n(both, [d.edge_gt.float() for d in both], 5)["ceiling"] == pytest.approx(0.152, abs=5e-4)


def test_correct_subset_and_evaluate(model, graphs, random_importances):
    index, counts = correct_subset(model, graphs, batch_size=7)
    assert index.tolist() == [i for i, d in enumerate(graphs) if d.full_pred == int(d.y)]
    assert counts == {"num_graphs": len(graphs), "num_correct": len(index)}
    kept = [graphs[i] for i in index.tolist()]
    imps = random_importances(kept)
    result = evaluate_explanations(model, kept, imps, fidelity_ratio=0.4)
    assert result["num_graphs"] == len(kept)
    for key in ("acc_auc", "acc", "recall@5", "recall@5_ceiling", "auroc_per_graph", "auroc_pooled",
                "auroc_needed", "num_graphs_needed", "fid+", "fid-"):
        assert key in result


def test_importance_shape_errors(graphs):
    ptr = EvalGraphs.of(graphs).edge_ptr
    with pytest.raises(ValueError, match="one per graph"):
        flatten_importances([torch.rand(3)], ptr)
    bad = [torch.rand(d.num_edges) for d in graphs]
    bad[5] = torch.rand(bad[5].numel() + 1)
    with pytest.raises(ValueError, match="graph 5"):
        flatten_importances(bad, ptr)
    with pytest.raises(ValueError, match="ptr"):
        flatten_importances(torch.rand(int(ptr[-1])), ptr, ptr=ptr.flip(0))
