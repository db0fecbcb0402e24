"""ReFineAlgorithm driven by torch_geometric.explain.Explainer."""
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.explain import Explainer, Explanation

from refine_fast.explain import ReFine, ReFineAlgorithm

from test_explain import GIN, GINE, make_dataset, train

MODEL_CONFIG = dict(mode="multiclass_classification", task_level="graph", return_type="raw")


@pytest.fixture(scope="module")
def setup():
    data = make_dataset(60, seed=5)
    model = train(GIN(), data[:45])
    refine = ReFine(model, 3, 4, hidden=12, epochs=2, lr=1e-3, batch_size=16)
    refine.pretrain(data[:45], progress=False)
    return model, refine, data[45:]


def explainer(model, refine, explanation_type="model", **kwargs):
    return Explainer(model, algorithm=ReFineAlgorithm(refine, steps=3, **kwargs),
                     explanation_type=explanation_type, edge_mask_type="object", model_config=MODEL_CONFIG)


def test_single_graph_phenomenon(setup):
    model, refine, test = setup
    g = test[0]
    explanation = explainer(model, refine, "phenomenon")(g.x, g.edge_index, target=g.y)
    assert isinstance(explanation, Explanation)
    assert explanation.edge_mask.shape == (g.num_edges,)
    expected = refine.explain([g], steps=3, classes=g.y, progress=False)[0].float()
    torch.testing.assert_close(explanation.edge_mask, expected)
    assert explanation.validate(raise_on_error=True)


def test_top_rho_selection_is_passed_through(setup):
    model, refine, test = setup
    g = test[0]
    explanation = explainer(model, refine, "phenomenon", select="top")(g.x, g.edge_index, target=g.y)
    expected = refine.explain([g], steps=3, classes=g.y, select="top", progress=False)[0].float()
    torch.testing.assert_close(explanation.edge_mask, expected)
    with pytest.raises(ValueError, match="ReFineAlgorithm: select"):
        ReFineAlgorithm(refine, select="best")


def test_batch_matches_refine_explain_and_edge_order(setup):
    model, refine, test = setup
    b = Batch.from_data_list(test[:5])
    perm = torch.randperm(b.num_edges, generator=torch.Generator().manual_seed(1))
    edge_index = b.edge_index[:, perm]
    explanation = explainer(model, refine)(b.x, edge_index, batch=b.batch)
    # the graphs as the algorithm sees them: each graph's edges in their order inside edge_index
    edge_graph = b.batch[edge_index[0]]
    rows = [torch.nonzero(edge_graph == i).view(-1) for i in range(5)]
    graphs = [Data(x=g.x, edge_index=edge_index[:, r] - b.ptr[i]) for i, (g, r) in enumerate(zip(test, rows))]
    expected = torch.zeros(b.num_edges)
    for r, m in zip(rows, refine.explain(graphs, steps=3, progress=False)):
        expected[r] = m.float()
    torch.testing.assert_close(explanation.edge_mask, expected)
    # the target defaults to the prediction in 'model' mode
    assert torch.equal(explanation.target, model(b.x, b.edge_index, b.batch).argmax(-1))


def test_index_restricts_to_some_graphs(setup):
    model, refine, test = setup
    b = Batch.from_data_list(test[:3])
    explanation = explainer(model, refine)(b.x, b.edge_index, batch=b.batch, index=torch.tensor([1]))
    e0, e1 = test[0].num_edges, test[1].num_edges
    mask = explanation.edge_mask
    assert (mask[:e0] == 0).all() and (mask[e0 + e1:] == 0).all() and (mask[e0:e0 + e1] > 0).all()


def test_edge_attr_is_forwarded():
    data = make_dataset(20, seed=6, edge_dim=2)
    model = GINE().eval()
    refine = ReFine(model, 3, 4, edge_dim=2, hidden=8, epochs=1)
    refine.pretrain(data, progress=False)
    g = data[0]
    explanation = explainer(model, refine)(g.x, g.edge_index, edge_attr=g.edge_attr)
    expected = refine.explain([g], steps=3, progress=False)[0].float()
    torch.testing.assert_close(explanation.edge_mask, expected)


def test_unsupported_settings_are_rejected(setup):
    model, refine, _ = setup
    with pytest.raises(ValueError, match="does not support"):
        Explainer(model, algorithm=ReFineAlgorithm(refine), explanation_type="model",
                  node_mask_type="attributes", edge_mask_type="object", model_config=MODEL_CONFIG)
    with pytest.raises(ValueError, match="does not support"):
        Explainer(model, algorithm=ReFineAlgorithm(refine), explanation_type="model", edge_mask_type="object",
                  model_config=dict(mode="multiclass_classification", task_level="node", return_type="raw"))
