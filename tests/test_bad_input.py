"""Bad input through the Python API: every case raises the right error type, and its message names the
argument (and the graph, where one graph is wrong). One row per case; the regressions below show what
used to go wrong silently."""
from types import SimpleNamespace

import pytest
import torch
from torch_geometric.data import Batch, Data

from refine_fast import ReFine, ReFineAlgorithm, ReFineConfig
from refine_fast.baselines import SA, GNNExplainer, PGExplainer, Random, refine_variants
from refine_fast.evaluation import evaluate_refine
from refine_fast.explain import GraphPack
from refine_fast.metrics import (EvalGraphs, acc_at_ratio, acc_auc, correct_subset, edge_auroc,
                                 evaluate_explanations, needs_ground_truth, recall_at_n)
from refine_fast.models import BA3MotifNet, MutagenicityNet, load_model, save_model, train_gnn
from refine_fast.store import ExplanationStore
from refine_fast.stream import explain_to_store

NAN, INF = float("nan"), float("inf")


def make_graphs(n: int = 6, seed: int = 0):
    """Small random graphs: 4 node features, 2 edge features, a label and a ground-truth edge mask."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        nodes = 5 + i % 3
        ei = torch.randint(0, nodes, (2, 2 * nodes), generator=gen)
        ei = ei[:, ei[0] != ei[1]]
        out.append(Data(x=torch.rand(nodes, 4, generator=gen), edge_index=ei,
                        edge_attr=torch.rand(ei.size(1), 2, generator=gen), y=torch.tensor([i % 3]),
                        edge_gt=torch.rand(ei.size(1), generator=gen) < 0.4))
    return out


def changed(graphs, i, **values):
    """A copy of ``graphs`` whose graph ``i`` has ``values`` set (a callable gets the graph; None deletes)."""
    out = list(graphs)
    g = graphs[i].clone()
    for key, value in values.items():
        if value is None:
            del g[key]
        else:
            g[key] = value(g) if callable(value) else value
    out[i] = g
    return out


def set_row(key, row, value=NAN):
    """For :func:`changed`: the graph's ``key`` with row ``row`` set to ``value``."""
    return lambda g: g[key].index_fill(0, torch.tensor([row]), value)


def edge_attr_rows(extra, width=2):
    """For :func:`changed`: a random ``edge_attr`` with ``extra`` more rows than edges."""
    return lambda g: torch.rand(g.num_edges + extra, width)


def narrow(g):
    """For :func:`changed`: the graph's node features cut to 3 columns."""
    return g.x[:, :3]


def wide(g):
    """For :func:`changed`: the graph's edge features in float64."""
    return g.edge_attr.double()


def everywhere(graphs, **values):
    out = list(graphs)
    for i in range(len(out)):
        out = changed(out, i, **values)
    return out


def write_files(root, refine, model):
    """A ReFine file, and truncated / garbled / foreign versions of it."""
    good = root / "refine.pt"
    refine.save(good)
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    garbled = bytearray(data)
    garbled[100:300] = bytes(b ^ 0xFF for b in garbled[100:300])
    (root / "garbled.pt").write_bytes(bytes(garbled))
    (root / "text.pt").write_text("not a torch file")
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")
    save_model(model, root / "model.pt")
    (root / "model_truncated.pt").write_bytes((root / "model.pt").read_bytes()[:100])
    other = ReFine(BA3MotifNet(in_channels=7), 3, 7)  # an explainer for a dataset with 7 node features
    other.save(root / "other_dataset.pt")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.manual_seed(0)
    model = MutagenicityNet(in_channels=4, edge_dim=2, hidden=8, num_classes=3, num_layers=2, dropout=0.0).eval()
    graphs = make_graphs()
    refine = ReFine(model, 3, 4, edge_dim=2, hidden=8, batch_size=4, fine_tune_steps=1)
    root = tmp_path_factory.mktemp("bad_input")
    write_files(root, refine, model)
    imps = [torch.rand(g.num_edges) for g in graphs]
    flat, ptr = torch.cat(imps), torch.tensor([0] + [g.num_edges for g in graphs]).cumsum(0)
    batch = Batch.from_data_list(graphs)
    return SimpleNamespace(model=model, graphs=graphs, refine=refine, root=root, imps=imps, flat=flat, ptr=ptr,
                           batch=batch)


def with_nan(imps, i):
    out = [t.clone() for t in imps]
    out[i][0] = NAN
    return out


def explain(e, graphs=None, **kw):
    return e.refine.explain(e.graphs if graphs is None else graphs, progress=False, **kw)


def algorithm_call(e, x=None, edge_attr=None, **kw):
    b = e.batch
    algo = ReFineAlgorithm(e.refine, steps=1)
    return algo(e.model, b.x if x is None else x, b.edge_index, target=torch.zeros(b.num_graphs, dtype=torch.long),
                batch=b.batch, edge_attr=b.edge_attr if edge_attr is None else edge_attr)


def store_call(e, tmp_ids=None, source=None, **kw):
    store = ExplanationStore(e.root / f"store_{len(list(e.root.iterdir()))}", 6 if tmp_ids is None else len(tmp_ids),
                             4, {})
    return explain_to_store(e.refine, e.graphs if source is None else source, store, tmp_ids, progress=False, **kw)


# (id, call, error type, substrings the message must contain)
CASES = [
    # -- ReFine constructor ------------------------------------------------------------------------
    ("refine-model-not-module", lambda e: ReFine("model", 3, 4), TypeError, ["model"]),
    ("refine-num-classes-0", lambda e: ReFine(e.model, 0, 4), ValueError, ["num_classes", ">= 1"]),
    ("refine-num-classes-str", lambda e: ReFine(e.model, "3", 4), TypeError, ["num_classes"]),
    ("refine-node-dim-float", lambda e: ReFine(e.model, 3, 4.5), TypeError, ["node_dim"]),
    ("refine-edge-dim-negative", lambda e: ReFine(e.model, 3, 4, edge_dim=-1), ValueError, ["edge_dim"]),
    ("refine-hidden-str", lambda e: ReFine(e.model, 3, 4, hidden="50"), TypeError, ["hidden"]),
    ("refine-config-dict", lambda e: ReFine(e.model, 3, 4, config={"hidden": 5}), TypeError, ["config"]),
    ("refine-model-other-dataset", lambda e: ReFine(MutagenicityNet(), 2, 4), ValueError,
     ["node_dim", "14", "4"]),
    ("refine-model-other-edge-dim", lambda e: ReFine(e.model, 3, 4, edge_dim=3), ValueError, ["edge_dim", "2", "3"]),
    # -- ReFineConfig ------------------------------------------------------------------------------
    ("config-hidden-str", lambda e: ReFineConfig(hidden="50"), TypeError, ["hidden", "int"]),
    ("config-hidden-float", lambda e: ReFineConfig(hidden=50.5), TypeError, ["hidden"]),
    ("config-hidden-bool", lambda e: ReFineConfig(hidden=True), TypeError, ["hidden"]),
    ("config-hidden-0", lambda e: ReFineConfig(hidden=0), ValueError, ["hidden", ">= 1"]),
    ("config-lr-nan", lambda e: ReFineConfig(lr=NAN), ValueError, ["lr", "finite"]),
    ("config-lr-0", lambda e: ReFineConfig(lr=0), ValueError, ["lr", "> 0"]),
    ("config-lr-str", lambda e: ReFineConfig(lr="0.1"), TypeError, ["lr"]),
    ("config-tau-inf", lambda e: ReFineConfig(tau=INF), ValueError, ["tau"]),
    ("config-gamma-negative", lambda e: ReFineConfig(gamma=-1), ValueError, ["gamma", ">= 0"]),
    ("config-ratio-0", lambda e: ReFineConfig(ratio=0), ValueError, ["ratio", "(0, 1]"]),
    ("config-ratio-above-1", lambda e: ReFineConfig(ratio=1.5), ValueError, ["ratio"]),
    ("config-temperature-0", lambda e: ReFineConfig(temperature=0.0), ValueError, ["temperature"]),
    ("config-fine-tune-lr-negative", lambda e: ReFineConfig(fine_tune_lr=-1e-3), ValueError, ["fine_tune_lr"]),
    ("config-size-coef-negative", lambda e: ReFineConfig(size_coef=-1.0), ValueError, ["size_coef"]),
    ("config-entropy-coef-nan", lambda e: ReFineConfig(entropy_coef=NAN), ValueError, ["entropy_coef"]),
    ("config-epochs-negative", lambda e: ReFineConfig(epochs=-1), ValueError, ["epochs"]),
    ("config-batch-size-0", lambda e: ReFineConfig(batch_size=0), ValueError, ["batch_size"]),
    ("config-steps-float", lambda e: ReFineConfig(fine_tune_steps=2.0), TypeError, ["fine_tune_steps"]),
    ("config-class-wise-int", lambda e: ReFineConfig(class_wise=1), TypeError, ["class_wise", "bool"]),
    ("config-from-dict-unknown", lambda e: ReFineConfig.from_dict({"hidden": 8, "gama": 1.0}), ValueError, ["gama"]),
    ("config-from-dict-not-dict", lambda e: ReFineConfig.from_dict([("hidden", 8)]), TypeError, ["from_dict"]),
    ("config-replace-unknown", lambda e: ReFineConfig().replace(gama=0), TypeError, ["gama"]),
    ("config-replace-bad-value", lambda e: ReFineConfig().replace(lr=-1), ValueError, ["lr"]),
    # -- ReFine.pretrain ---------------------------------------------------------------------------
    ("pretrain-batch", lambda e: e.refine.pretrain(e.batch, progress=False), TypeError,
     ["dataset", "Batch", "to_data_list"]),
    ("pretrain-single-data", lambda e: e.refine.pretrain(e.graphs[0], progress=False), TypeError,
     ["dataset", "single"]),
    ("pretrain-nan-x", lambda e: e.refine.pretrain(changed(e.graphs, 3, x=set_row("x", 2)), progress=False),
     ValueError, ["dataset[3]", "NaN", "node 2"]),
    ("pretrain-epochs-negative", lambda e: e.refine.pretrain(e.graphs, epochs=-1, progress=False), ValueError,
     ["epochs"]),
    ("pretrain-batch-size-0", lambda e: e.refine.pretrain(e.graphs, batch_size=0, progress=False), ValueError,
     ["batch_size"]),
    ("pretrain-seed-str", lambda e: e.refine.pretrain(e.graphs, seed="0", progress=False), TypeError, ["seed"]),
    ("pretrain-val-width", lambda e: e.refine.pretrain(e.graphs, epochs=0, progress=False,
                                                       val_dataset=everywhere(e.graphs[:2], x=narrow)),
     ValueError, ["val_dataset", "node_dim=4", "3"]),
    # -- ReFine.explain: the graphs ----------------------------------------------------------------
    ("explain-batch", lambda e: explain(e, e.batch), TypeError, ["graphs", "Batch", "to_data_list"]),
    ("explain-single-data", lambda e: explain(e, e.graphs[0]), TypeError, ["graphs", "[data]"]),
    ("explain-tensor", lambda e: explain(e, torch.zeros(3)), TypeError, ["graphs"]),
    ("explain-item-tuple", lambda e: explain(e, [("x", e.graphs[0].x)]), TypeError, ["graphs[0]", "Data"]),
    ("explain-item-batch", lambda e: explain(e, [e.batch]), TypeError, ["graphs[0]", "Batch"]),
    ("explain-no-x", lambda e: explain(e, changed(e.graphs, 1, x=None)), ValueError, ["graphs[1]", "x"]),
    ("explain-int-x", lambda e: explain(e, changed(e.graphs, 2, x=lambda g: g.x.long())), TypeError,
     ["graphs[2]", "floating"]),
    ("explain-1d-x", lambda e: explain(e, changed(e.graphs, 1, x=lambda g: g.x[:, 0])), ValueError,
     ["graphs[1]", "2-D"]),
    ("explain-x-width-vs-explainer", lambda e: explain(e, everywhere(e.graphs, x=lambda g: torch.rand(g.num_nodes, 5))),
     ValueError, ["graphs", "5 node features", "node_dim=4"]),
    ("explain-x-width-one-graph", lambda e: explain(e, changed(e.graphs, 4, x=lambda g: torch.rand(g.num_nodes, 5))),
     ValueError, ["graphs[4]", "same node feature width"]),
    ("explain-float64-x", lambda e: explain(e, everywhere(e.graphs, x=lambda g: g.x.double())), TypeError,
     ["graphs", "x is torch.float64", "expected torch.float32"]),
    ("explain-inf-x", lambda e: explain(e, changed(e.graphs, 2, x=set_row("x", 1, INF))),
     ValueError, ["graphs[2]", "node 1"]),
    ("explain-float-edge-index", lambda e: explain(e, changed(e.graphs, 1, edge_index=lambda g: g.edge_index.float())),
     TypeError, ["graphs[1]", "edge_index", "integer"]),
    ("explain-edge-index-shape", lambda e: explain(e, changed(e.graphs, 1, edge_index=lambda g: g.edge_index[:1])),
     ValueError, ["graphs[1]", "edge_index", "[2, E]"]),
    ("explain-edge-index-too-large", lambda e: explain(e, changed(e.graphs, 3, edge_index=lambda g: g.edge_index + 50)),
     ValueError, ["graphs[3]", "edge_index", "out of range"]),
    ("explain-edge-index-negative", lambda e: explain(e, changed(e.graphs, 0, edge_index=lambda g: g.edge_index - 50)),
     ValueError, ["graphs[0]", "out of range"]),
    ("explain-edge-attr-extra-rows", lambda e: explain(e, changed(e.graphs, 1, edge_attr=edge_attr_rows(3))),
     ValueError, ["graphs[1]", "edge_attr", "rows", "one row per edge"]),
    ("explain-edge-attr-few-rows", lambda e: explain(e, changed(e.graphs, 2, edge_attr=edge_attr_rows(-2))),
     ValueError, ["graphs[2]", "edge_attr", "rows"]),
    ("explain-edge-attr-on-some", lambda e: explain(e, changed(e.graphs, 5, edge_attr=None)), ValueError,
     ["graphs[5]", "edge_attr"]),
    ("explain-edge-attr-missing", lambda e: explain(e, everywhere(e.graphs, edge_attr=None)), ValueError,
     ["graphs", "no edge_attr", "edge_dim=2"]),
    ("explain-edge-attr-width", lambda e: explain(e, everywhere(e.graphs, edge_attr=edge_attr_rows(0, width=3))),
     ValueError, ["graphs", "3 edge features", "edge_dim=2"]),
    ("explain-edge-attr-nan", lambda e: explain(e, changed(e.graphs, 2, edge_attr=set_row("edge_attr", 4))),
     ValueError, ["graphs[2]", "edge_attr", "edge 4"]),
    ("explain-edge-gt-length", lambda e: explain(e, changed(e.graphs, 1, edge_gt=torch.ones(2, dtype=torch.bool))),
     ValueError, ["graphs[1]", "edge_gt"]),
    ("explain-graph-id-named", lambda e: explain(e, changed(e.graphs, 2, x=lambda g: g.x * NAN),
                                                 graph_ids=[10, 11, 12, 13, 14, 15]),
     ValueError, ["graphs[2]", "graph id 12"]),
    # -- ReFine.explain: the other arguments -------------------------------------------------------
    ("explain-graph-ids-length", lambda e: explain(e, graph_ids=[0, 1]), ValueError, ["graph_ids", "2 entries"]),
    ("explain-graph-ids-float", lambda e: explain(e, graph_ids=[0.5] * 6), TypeError, ["graph_ids"]),
    ("explain-graph-ids-negative", lambda e: explain(e, graph_ids=[0, 1, 2, -3, 4, 5]), ValueError, ["graph_ids[3]"]),
    ("explain-ratio-0", lambda e: explain(e, ratio=0.0), ValueError, ["ratio", "(0, 1]"]),
    ("explain-ratio-nan", lambda e: explain(e, ratio=NAN), ValueError, ["ratio"]),
    ("explain-ratio-str", lambda e: explain(e, ratio="0.4"), TypeError, ["ratio"]),
    ("explain-steps-negative", lambda e: explain(e, steps=-1), ValueError, ["steps"]),
    ("explain-steps-float", lambda e: explain(e, steps=2.5), TypeError, ["steps"]),
    ("explain-lr-0", lambda e: explain(e, lr=0), ValueError, ["lr"]),
    ("explain-batch-size-0", lambda e: explain(e, batch_size=0), ValueError, ["batch_size"]),
    ("explain-seed-float", lambda e: explain(e, seed=1.5), TypeError, ["seed"]),
    ("explain-workers-0", lambda e: explain(e, workers=0), ValueError, ["workers"]),
    ("explain-classes-range", lambda e: explain(e, classes=[0, 1, 2, 7, 0, 1]), ValueError, ["classes[3]", "[0, 3)"]),
    ("explain-classes-float", lambda e: explain(e, classes=[0.0] * 6), TypeError, ["classes"]),
    ("explain-classes-length", lambda e: explain(e, classes=[0, 1]), ValueError, ["classes"]),
    ("explain-select", lambda e: explain(e, select="best"), ValueError, ["select"]),
    # -- ReFine.load and load_model ----------------------------------------------------------------
    ("load-truncated", lambda e: ReFine.load(e.root / "truncated.pt", e.model), ValueError, ["truncated.pt"]),
    ("load-garbled", lambda e: ReFine.load(e.root / "garbled.pt", e.model), ValueError, ["garbled.pt"]),
    ("load-text", lambda e: ReFine.load(e.root / "text.pt", e.model), ValueError, ["text.pt"]),
    ("load-foreign", lambda e: ReFine.load(e.root / "foreign.pt", e.model), ValueError,
     ["foreign.pt", "not a refine_fast"]),
    ("load-missing", lambda e: ReFine.load(e.root / "missing.pt", e.model), FileNotFoundError, ["missing.pt"]),
    ("load-other-dataset", lambda e: ReFine.load(e.root / "other_dataset.pt", e.model), ValueError,
     ["other_dataset.pt", "node_dim", "4", "7"]),
    ("load-model-truncated", lambda e: load_model(e.root / "model_truncated.pt"), ValueError, ["model_truncated.pt"]),
    ("load-model-not-a-model", lambda e: load_model(e.root / "foreign.pt"), ValueError, ["foreign.pt", "save_model"]),
    # -- GraphPack ---------------------------------------------------------------------------------
    ("pack-empty", lambda e: GraphPack([]), ValueError, ["graphs", "empty"]),
    ("pack-batch", lambda e: GraphPack(e.batch), TypeError, ["GraphPack", "Batch"]),
    ("pack-edge-attr-rows", lambda e: GraphPack(changed(e.graphs, 4, edge_attr=edge_attr_rows(1))),
     ValueError, ["GraphPack: graphs[4]", "edge_attr"]),
    ("pack-from-batch-unsorted", lambda e: GraphPack.from_batch(e.batch.x, e.batch.edge_index, e.batch.batch.flip(0)),
     ValueError, ["from_batch", "batch", "sorted"]),
    ("pack-from-batch-cross-edge", lambda e: GraphPack.from_batch(
        e.batch.x, torch.tensor([[0], [int(e.batch.ptr[1])]]), e.batch.batch),
     ValueError, ["edge_index", "joins graph 0"]),
    # -- metrics -----------------------------------------------------------------------------------
    ("acc-auc-nan-importance", lambda e: acc_auc(e.model, e.graphs, with_nan(e.imps, 3)), ValueError,
     ["importances", "graph 3", "NaN"]),
    ("acc-auc-ratio-0", lambda e: acc_auc(e.model, e.graphs, e.imps, ratios=[0.1, 0.0]), ValueError, ["ratios[1]"]),
    ("acc-auc-ratios-empty", lambda e: acc_auc(e.model, e.graphs, e.imps, ratios=[]), ValueError, ["ratios", "empty"]),
    ("acc-auc-single-data", lambda e: acc_auc(e.model, e.graphs[0], e.imps[:1]), TypeError, ["graphs", "single"]),
    ("acc-auc-model-other-dataset", lambda e: acc_auc(MutagenicityNet(), e.graphs, e.imps), ValueError,
     ["acc_auc: graphs", "node_dim=14", "model"]),
    ("acc-auc-float64-edge-attr", lambda e: acc_auc(e.model, everywhere(e.graphs, edge_attr=wide), e.imps),
     TypeError, ["acc_auc: graphs", "edge_attr", "the model's"]),
    ("acc-at-ratio-0", lambda e: acc_at_ratio(e.model, e.graphs, e.imps, 0.0), ValueError, ["ratio"]),
    ("recall-n-negative", lambda e: recall_at_n(e.graphs, e.imps, n=-3), ValueError, ["recall_at_n: n", ">= 1"]),
    ("recall-n-0", lambda e: recall_at_n(e.graphs, e.imps, n=0), ValueError, ["n"]),
    ("recall-n-float", lambda e: recall_at_n(e.graphs, e.imps, n=2.5), TypeError, ["n"]),
    ("edge-auroc-inf", lambda e: edge_auroc(e.graphs, [t * INF for t in e.imps]), ValueError,
     ["importances", "graph 0"]),
    ("edge-auroc-ptr-decreasing", lambda e: edge_auroc(e.graphs, e.flat, ptr=e.ptr.flip(0)), ValueError, ["ptr"]),
    ("edge-auroc-ptr-float", lambda e: edge_auroc(e.graphs, e.flat, ptr=e.ptr.float()), TypeError, ["ptr"]),
    ("edge-auroc-ptr-short", lambda e: edge_auroc(e.graphs, e.flat, ptr=e.ptr[:-1]), ValueError, ["ptr"]),
    ("importances-not-tensor", lambda e: edge_auroc(e.graphs, [e.imps[0], e.imps[1].tolist()] + e.imps[2:]),
     TypeError, ["importances[1]"]),
    ("evaluate-nan-importance", lambda e: evaluate_explanations(e.model, e.graphs, with_nan(e.imps, 4)), ValueError,
     ["importances", "graph 4"]),
    ("evaluate-fidelity-ratio", lambda e: evaluate_explanations(e.model, e.graphs, e.imps, fidelity_ratio=2.0),
     ValueError, ["fidelity_ratio"]),
    ("evaluate-n-0", lambda e: evaluate_explanations(e.model, e.graphs, e.imps, n=0), ValueError, ["n"]),
    ("correct-subset-no-y", lambda e: correct_subset(e.model, changed(e.graphs, 2, y=None)), ValueError,
     ["graphs[2]", "y"]),
    ("needs-ground-truth-none", lambda e: needs_ground_truth(e.model, everywhere(e.graphs, edge_gt=None)),
     ValueError, ["needs_ground_truth", "edge_gt"]),
    ("needs-ground-truth-other-dataset", lambda e: needs_ground_truth(MutagenicityNet(), e.graphs), ValueError,
     ["needs_ground_truth: graphs", "node_dim=14"]),
    ("eval-graphs-edge-gt", lambda e: EvalGraphs.of(changed(e.graphs, 1, edge_gt=torch.ones(1, dtype=torch.bool))),
     ValueError, ["graphs[1]", "edge_gt"]),
    # -- evaluation.evaluate_refine ----------------------------------------------------------------
    ("evaluate-refine-ratio", lambda e: evaluate_refine(e.refine, e.graphs, ratios=[0.5, 1.5]), ValueError,
     ["evaluate_refine: ratios[1]"]),
    ("evaluate-refine-batch", lambda e: evaluate_refine(e.refine, e.batch), TypeError, ["evaluate_refine: graphs"]),
    ("evaluate-refine-nan", lambda e: evaluate_refine(e.refine, changed(e.graphs, 1, x=lambda g: g.x * NAN)),
     ValueError, ["evaluate_refine: graphs[1]"]),
    ("evaluate-refine-n", lambda e: evaluate_refine(e.refine, e.graphs, n=0), ValueError, ["n"]),
    # -- ReFineAlgorithm ---------------------------------------------------------------------------
    ("algorithm-not-refine", lambda e: ReFineAlgorithm("refine"), TypeError, ["refine"]),
    ("algorithm-ratio", lambda e: ReFineAlgorithm(e.refine, ratio=2.0), ValueError, ["ReFineAlgorithm: ratio"]),
    ("algorithm-nan-x", lambda e: algorithm_call(e, x=e.batch.x.index_fill(0, torch.tensor([7]), NAN)), ValueError,
     ["ReFineAlgorithm", "x", "NaN"]),
    ("algorithm-x-width", lambda e: algorithm_call(e, x=torch.rand(e.batch.num_nodes, 5)), ValueError,
     ["ReFineAlgorithm", "node_dim=4"]),
    ("algorithm-edge-attr-rows", lambda e: algorithm_call(e, edge_attr=torch.rand(e.batch.num_edges + 2, 2)),
     ValueError, ["ReFineAlgorithm", "edge_attr", "rows"]),
    # -- baselines ---------------------------------------------------------------------------------
    ("sa-batch", lambda e: SA().explain(e.model, e.batch), TypeError, ["SA.explain: graphs", "Batch"]),
    ("gnnexplainer-nan", lambda e: GNNExplainer(epochs=1).explain(e.model, changed(e.graphs, 1, x=lambda g: g.x * NAN)),
     ValueError, ["GNNExplainer.explain: graphs[1]", "NaN"]),
    ("random-seed-str", lambda e: Random().explain(e.model, e.graphs, seed="1"), TypeError, ["seed"]),
    ("pgexplainer-fit-width", lambda e: PGExplainer(epochs=1).fit(e.model, everywhere(e.graphs, x=narrow)),
     ValueError, ["PGExplainer.fit: train_graphs", "node_dim=4"]),
    ("refine-variant-fit-batch", lambda e: refine_variants(ReFineConfig(hidden=8, epochs=1))[0].fit(e.model, e.batch),
     TypeError, ["fit: train_graphs", "Batch"]),
    # -- models.train_gnn ---------------------------------------------------------------------------
    ("train-gnn-epochs-negative", lambda e: train_gnn(e.model, e.graphs, e.graphs, epochs=-1, progress=False),
     ValueError, ["train_gnn: epochs", ">= 1"]),
    ("train-gnn-lr-0", lambda e: train_gnn(e.model, e.graphs, e.graphs, lr=0.0, progress=False), ValueError,
     ["train_gnn: lr"]),
    ("train-gnn-no-y", lambda e: train_gnn(e.model, e.graphs, changed(e.graphs, 4, y=None), progress=False),
     ValueError, ["train_gnn: val_set[4]", "y"]),
    ("train-gnn-width", lambda e: train_gnn(e.model, everywhere(e.graphs, x=narrow), e.graphs, progress=False),
     ValueError, ["train_gnn: train_set", "node_dim=4", "the model's"]),
    # -- stream.explain_to_store -------------------------------------------------------------------
    ("stream-ratio", lambda e: store_call(e, ratio=0.0), ValueError, ["explain_to_store: ratio"]),
    ("stream-ids-range", lambda e: store_call(e, tmp_ids=[0, 1, 99]), ValueError, ["explain_to_store: ids[2]", "99"]),
    ("stream-source-data", lambda e: store_call(e, source=e.graphs[0]), TypeError, ["explain_to_store: source"]),
    ("stream-nan-graph", lambda e: store_call(e, source=changed(e.graphs, 5, x=lambda g: g.x * NAN)), ValueError,
     ["graphs[1]", "graph id 5"]),
]


@pytest.mark.parametrize("call, error, parts", [pytest.param(c, err, p, id=i) for i, c, err, p in CASES])
def test_bad_input_is_refused_by_name(env, call, error, parts):
    with pytest.raises(error) as info:
        call(env)
    message = str(info.value)
    missing = [p for p in parts if p not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def test_table_covers_every_entry_point():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


# -- regressions: what used to pass silently -----------------------------------------------------------

def test_extra_edge_attr_rows_no_longer_shift_other_graphs(env):
    """Extra ``edge_attr`` rows in graph 1 used to be concatenated into the pack, so every later graph
    read its neighbour's edge features (other graphs' explanations changed); now the call is refused and
    the good graphs explain as before."""
    good = explain(env, steps=1)
    bad = changed(env.graphs, 1, edge_attr=lambda g: torch.cat([g.edge_attr, torch.rand(4, 2)]))
    with pytest.raises(ValueError, match=r"graphs\[1\]: edge_attr has \d+ rows but the graph has \d+ edges"):
        explain(env, bad, steps=1)
    again = explain(env, steps=1)
    assert all(torch.equal(a, b) for a, b in zip(good, again))


def test_nan_importances_are_not_scored(env):
    """All-NaN importances used to be ranked like ties and scored as a normal result."""
    nan = [torch.full_like(t, NAN) for t in env.imps]
    for score in (lambda: evaluate_explanations(env.model, env.graphs, nan),
                  lambda: acc_auc(env.model, env.graphs, torch.cat(nan), ptr=env.ptr),
                  lambda: recall_at_n(env.graphs, nan)):
        with pytest.raises(ValueError, match="importances: graph 0 has a NaN or inf importance"):
            score()


def test_valid_input_passes_every_check(env):
    """The checks refuse only bad input: int32 edge_index, 1-D edge_attr on a model that ignores it, an
    empty graph, numpy numbers and a dataset-like sequence are accepted."""
    import numpy as np
    graphs = changed(env.graphs, 0, edge_index=lambda g: g.edge_index.int())
    graphs.append(Data(x=torch.rand(3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long),
                       edge_attr=torch.zeros(0, 2), y=torch.tensor([1])))
    out = env.refine.explain(tuple(graphs), ratio=np.float32(0.5), steps=np.int64(1), progress=False)
    assert [t.numel() for t in out] == [g.num_edges for g in graphs]
    assert ReFineConfig(lr=1, gamma=0, hidden=np.int64(8)).lr == 1
    # a file from an older version: the options it predates take the values that reproduce it (LEGACY)
    from refine_fast.explain.config import LEGACY
    assert ReFineConfig.from_dict({"hidden": 8}) == ReFineConfig(hidden=8, **LEGACY)
