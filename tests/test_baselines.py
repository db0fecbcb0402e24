"""Every baseline returns one finite importance per edge; SA equals a per-graph autograd computation;
PGM-Explainer finds the one node a toy model looks at."""
import pytest
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import LEConv, global_mean_pool

import refine_fast.baselines as baselines
from refine_fast.baselines import (EXPLAINERS, TOP_RHO, GNNExplainer, PGExplainer, PGMExplainer, Random, SA,
                                   build_explainers, refine_variants)
from refine_fast.explain import ReFineConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny graphs: one torch thread avoids OpenMP oversubscription on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyGNN(nn.Module):
    """LEConv ×2, mean pool, linear: logits [B, 3]; ``edge_attr [E, 1]`` is the edge weight."""

    def __init__(self, in_channels=4, hidden=8, num_classes=3):
        super().__init__()
        self.conv1, self.conv2 = LEConv(in_channels, hidden), LEConv(hidden, hidden)
        self.lin = nn.Linear(hidden, num_classes)

    def forward(self, x, edge_index, edge_attr=None, batch=None):
        w = None if edge_attr is None else edge_attr.view(-1)
        h = self.conv2(self.conv1(x, edge_index, w).relu(), edge_index, w).relu()
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long)
        return self.lin(global_mean_pool(h, batch))


def tiny_graphs(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        nodes = 5 + i % 4
        ei = torch.randint(0, nodes, (2, 2 * nodes), generator=g)
        ei = ei[:, ei[0] != ei[1]]
        out.append(Data(x=torch.rand(nodes, 4, generator=g), edge_index=ei,
                        edge_attr=torch.ones(ei.size(1), 1), y=torch.tensor([i % 3]),
                        edge_gt=torch.rand(ei.size(1), generator=g) < 0.4))
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyGNN().eval()


@pytest.fixture(scope="module")
def graphs():
    return tiny_graphs()


def tiny_config():
    return ReFineConfig(hidden=8, epochs=1, batch_size=8, fine_tune_steps=2)


def check(importances, graphs):
    assert len(importances) == len(graphs)
    for imp, g in zip(importances, graphs):
        assert imp.shape == (g.edge_index.size(1),)
        assert torch.isfinite(imp).all()


def per_graph_sa(model, g):
    mask = torch.ones(g.edge_index.size(1), requires_grad=True)
    set_masks(model, mask, g.edge_index, apply_sigmoid=False)
    try:
        logits = model(g.x, g.edge_index, g.edge_attr, torch.zeros(g.num_nodes, dtype=torch.long))
    finally:
        clear_masks(model)
    (grad,) = torch.autograd.grad(logits[0, logits[0].argmax()], mask)
    return grad.abs()


def test_sa_matches_per_graph_autograd(model, graphs):
    out = SA(batch_size=5).explain(model, graphs, seed=0)
    check(out, graphs)
    for imp, g in zip(out, graphs):
        torch.testing.assert_close(imp, per_graph_sa(model, g), rtol=1e-5, atol=1e-6)


def test_sa_graph_without_edges(model, graphs):
    empty = Data(x=torch.rand(3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, 1), y=torch.tensor([0]))
    out = SA().explain(model, [graphs[0], empty, graphs[1]], seed=0)
    assert out[1].shape == (0,)
    torch.testing.assert_close(out[2], per_graph_sa(model, graphs[1]), rtol=1e-5, atol=1e-6)


def test_random_is_seeded_chance(model, graphs):
    empty = Data(x=torch.rand(3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, 1), y=torch.tensor([0]))
    a = Random().explain(model, graphs + [empty], seed=1)
    check(a, graphs + [empty])
    assert all(torch.equal(x, y) for x, y in zip(a, Random().explain(model, graphs + [empty], seed=1)))
    assert not torch.equal(torch.cat(a), torch.cat(Random().explain(model, graphs + [empty], seed=2)))
    assert all(((t >= 0) & (t < 1)).all() for t in a)


def test_gnnexplainer_then_sa_still_has_gradients(model, graphs):
    out = GNNExplainer(epochs=3).explain(model, graphs[:3], seed=0)
    check(out, graphs[:3])
    # PyG's GNNExplainer leaves a mask parameter slot behind; SA must still see its own mask's gradient
    for imp, g in zip(SA().explain(model, graphs[:3], seed=0), graphs[:3]):
        torch.testing.assert_close(imp, per_graph_sa(model, g), rtol=1e-5, atol=1e-6)
        assert imp.abs().sum() > 0


def test_gnnexplainer_is_seeded(model, graphs):
    a = GNNExplainer(epochs=3).explain(model, graphs[:2], seed=1)
    b = GNNExplainer(epochs=3).explain(model, graphs[:2], seed=1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_pgexplainer(model, graphs):
    pg = PGExplainer(epochs=2, batch_size=5)
    with pytest.raises(RuntimeError, match="fit"):
        pg.explain(model, graphs, seed=0)
    pg.fit(model, graphs, seed=0)
    out = pg.explain(model, graphs, seed=0)
    check(out, graphs)
    assert all(((o >= 0) & (o <= 1)).all() for o in out)


class LooksAtOneNode(nn.Module):
    """Logits ``[1, 2]`` from node ``node``'s feature sum times the mean edge weight (``edge_attr`` is
    required): with all-ones features class 0, and perturbing that node's features can flip it."""

    def __init__(self, node):
        super().__init__()
        self.node = node

    def forward(self, x, edge_index, edge_attr, batch=None):
        s = x[self.node].sum() * edge_attr.mean()
        return torch.stack([s, 2.0 - s]).view(1, 2)


def ring(n):
    i = torch.arange(n)
    ei = torch.cat([torch.stack([i, (i + 1) % n]), torch.stack([(i + 1) % n, i])], 1)
    return Data(x=torch.ones(n, 4), edge_index=ei, edge_attr=torch.ones(ei.size(1), 1))


def test_pgm_explainer_finds_the_node_the_model_looks_at():
    pytest.importorskip("pgmpy", reason="PGM-Explainer needs pgmpy (the pgm extra)")
    g = ring(10)
    imp = PGMExplainer().explain(LooksAtOneNode(5), [g], seed=0)[0]
    touches = (g.edge_index == 5).any(0)
    assert imp.shape == (g.edge_index.size(1),) and ((imp >= 0) & (imp <= 1)).all()
    assert imp[touches].min() > imp[~touches].max()


def test_pgm_explainer_seeded_per_graph(model, graphs):
    pytest.importorskip("pgmpy", reason="PGM-Explainer needs pgmpy (the pgm extra)")
    empty = Data(x=torch.rand(3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, 1), y=torch.tensor([0]))
    loop = Data(x=torch.rand(1, 4), edge_index=torch.zeros(2, 1, dtype=torch.long), edge_attr=torch.ones(1, 1))
    pgm = PGMExplainer(num_samples=40)
    out = pgm.explain(model, graphs[:3] + [empty, loop], seed=1)
    check(out, graphs[:3] + [empty, loop])
    assert all(((o >= 0) & (o <= 1)).all() for o in out)
    torch.testing.assert_close(pgm.explain(model, [graphs[1]], seed=1)[0], out[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="candidates"):
        PGMExplainer(candidates=0.0)


def test_pgm_explainer_without_pgmpy(model, graphs, monkeypatch):
    monkeypatch.setattr(baselines, "has_pgmpy", lambda: False)
    monkeypatch.setattr(baselines.pgm, "has_pgmpy", lambda: False)
    assert "PGM-Explainer" not in build_explainers(tiny_config()) and "pgmpy" in baselines.not_run()["PGM-Explainer"]
    with pytest.raises(ImportError, match="pgmpy"):
        build_explainers(tiny_config(), names=["PGM-Explainer"])
    with pytest.raises(ImportError, match="pgmpy"):
        PGMExplainer().explain(model, graphs[:1])


def test_refine_variants(model, graphs):
    variants = refine_variants(tiny_config())
    assert [v.name for v in variants] == ["PGExplainer (refine_fast)", "ReFine-CT", "ReFine-FT", "ReFine", TOP_RHO]
    for v in variants:
        v.fit(model, graphs, seed=0)
        check(v.explain(model, graphs, seed=0, ratio=0.5), graphs)
    by_name = {v.name: v for v in variants}
    assert by_name["ReFine"].refine is by_name["ReFine-FT"].refine is by_name[TOP_RHO].refine  # one pre-training
    assert (by_name["ReFine"].select, by_name[TOP_RHO].select) == ("sample", "top")
    assert by_name["ReFine-CT"].refine is not by_name["ReFine"].refine
    assert by_name["PGExplainer (refine_fast)"].refine.attributors.groups == 1


def test_refine_checkpoint_reused(model, graphs, tmp_path):
    a = refine_variants(tiny_config())[3]
    a.fit(model, graphs, seed=0, checkpoint_dir=tmp_path)
    b = refine_variants(tiny_config())[3]
    b.fit(model, graphs, seed=0, checkpoint_dir=tmp_path)
    assert a.fit_seconds == b.fit_seconds
    for x, y in zip(a.explain(model, graphs, 0, ratio=0.5), b.explain(model, graphs, 0, ratio=0.5)):
        torch.testing.assert_close(x, y)


def test_registry():
    built = build_explainers(tiny_config(), gnnexplainer_epochs=2, pgexplainer_epochs=1)
    assert list(built) == [n for n in EXPLAINERS if n != "PGM-Explainer" or baselines.has_pgmpy()]  # pgm extra
    with pytest.raises(ValueError, match="unknown explainer"):
        build_explainers(tiny_config(), names=["PGM"])
