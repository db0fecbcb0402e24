"""refine_fast.nn.EdgeScoreMLP (and edge_mlp, which ReFine's attributors call too) equals
Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij]))) per group."""
import math

import pytest
import torch
from torch import nn

from refine_fast.nn import EdgeScoreMLP
from refine_fast.nn.edge_score_mlp import EveryGroup, RowGroups, group_edge_index
from refine_fast.ops import edge_score

D, H = 6, 10


def linear_pair(mlp: EdgeScoreMLP, g: int):
    """Group g's MLP as two nn.Linear layers holding copies of its parameters."""
    first = nn.Linear(2 * mlp.node_dim + mlp.edge_dim, mlp.hidden).double()
    second = nn.Linear(mlp.hidden, 1).double()
    W = mlp.weight[g]
    parts = [W[:, :mlp.hidden], W[:, mlp.hidden:]] + ([mlp.edge_weight[g]] if mlp.edge_weight is not None else [])
    with torch.no_grad():
        first.weight.copy_(torch.cat(parts).t())
        first.bias.copy_(mlp.bias[g])
        second.weight.copy_(mlp.out_weight[g][None])
        second.bias.copy_(mlp.out_bias[g : g + 1])
    return first, second


def graph(N=30, E=120, edge_dim=0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(N, D, generator=gen, dtype=torch.float64)
    edge_index = torch.randint(0, N, (2, E), generator=gen)
    edge_attr = torch.randn(E, edge_dim, generator=gen, dtype=torch.float64) if edge_dim else None
    return z, edge_index, edge_attr


def expected(mlp, z, edge_index, edge_attr, group):
    x = torch.cat([z[edge_index[0]], z[edge_index[1]]] + ([edge_attr] if edge_attr is not None else []), dim=1)
    out = torch.empty(edge_index.size(1), dtype=z.dtype)
    for g in range(mlp.groups):
        first, second = linear_pair(mlp, g)
        sel = group == g
        out[sel] = second(torch.tanh(first(x[sel]))).squeeze(-1)
    return out


@pytest.mark.parametrize("edge_dim", [0, 4])
@pytest.mark.parametrize("groups", [1, 3])
def test_equals_linear_tanh_linear(edge_dim, groups):
    torch.manual_seed(0)
    mlp = EdgeScoreMLP(D, H, edge_dim, groups).double()
    z, edge_index, edge_attr = graph(edge_dim=edge_dim)
    group = torch.randint(0, groups, (edge_index.size(1),))
    out = mlp(z, edge_index, edge_attr, group if groups > 1 else None)
    torch.testing.assert_close(out, expected(mlp, z, edge_index, edge_attr, group))


@pytest.mark.parametrize("edge_dim", [0, 4])
def test_node_group_path(edge_dim):
    torch.manual_seed(1)
    mlp = EdgeScoreMLP(D, H, edge_dim, groups=3).double()
    z, _, edge_attr = graph(edge_dim=edge_dim)
    node_group = torch.arange(30) // 10  # three graphs of 10 nodes, one group each
    edge_index = torch.randint(0, 10, (2, 120)) + (torch.arange(120) % 3) * 10
    group = node_group[edge_index[0]]
    out = mlp(z, edge_index, edge_attr, node_group=node_group)
    torch.testing.assert_close(out, expected(mlp, z, edge_index, edge_attr, group))
    torch.testing.assert_close(out, mlp(z, edge_index, edge_attr, group))


def test_gradients_match_linear_layers():
    torch.manual_seed(2)
    mlp = EdgeScoreMLP(D, H, 3, groups=2).double()
    z, edge_index, edge_attr = graph(edge_dim=3)
    group = torch.randint(0, 2, (edge_index.size(1),))
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    mlp(z1, edge_index, edge_attr, group).square().sum().backward()
    grads = {k: p.grad.clone() for k, p in mlp.named_parameters()}
    mlp.zero_grad()
    x = torch.cat([z2[edge_index[0]], z2[edge_index[1]], edge_attr], dim=1)
    params = dict(mlp.named_parameters())
    W = params["weight"]
    first_w = torch.cat([W[..., :H], W[..., H:], params["edge_weight"]], dim=1)  # [G, 2D + De, H]
    h = torch.tanh(torch.einsum("ei,eih->eh", x, first_w[group]) + params["bias"][group])
    ((h * params["out_weight"][group]).sum(-1) + params["out_bias"][group]).square().sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    for k, p in mlp.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, msg=lambda m: f"{k}: {m}")


def test_every_group_layout_with_own_projections():
    torch.manual_seed(3)
    mlp = EdgeScoreMLP(D, H, groups=3).double()
    z, edge_index, _ = graph()
    group = torch.randint(0, 3, (edge_index.size(1),))
    W = mlp.weight
    proj = EveryGroup().linear(z, W[..., :H], mlp.bias)
    assert proj.shape == (30 * 3, H)  # every group's projection of every node
    # A caller holding [N, G, H] projections uses group_edge_index and edge_score directly.
    p = torch.einsum("nd,gdh->ngh", z, W[..., :H]) + mlp.bias
    q = torch.einsum("nd,gdh->ngh", z, W[..., H:])
    torch.testing.assert_close(proj, p.reshape(-1, H))
    rows = group_edge_index(edge_index, group, 3)
    out = edge_score(p.reshape(-1, H), q.reshape(-1, H), rows, mlp.out_weight, mlp.out_bias, None, group)
    torch.testing.assert_close(out, expected(mlp, z, edge_index, None, group))
    torch.testing.assert_close(out, mlp(z, edge_index, group=group))


def test_row_groups_linear():
    x = torch.randn(20, 4, dtype=torch.float64)
    group = torch.randint(0, 3, (20,))
    weight, bias = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    ref = torch.einsum("mi,mih->mh", x, weight[group]) + bias[group]
    torch.testing.assert_close(RowGroups(group).linear(x, weight, bias), ref)
    torch.testing.assert_close(RowGroups().linear(x, weight), x @ weight[0])


def test_xavier_uniform_init():
    torch.manual_seed(4)
    mlp = EdgeScoreMLP(40, 64, 8, groups=2)
    bound = math.sqrt(6 / (2 * 40 + 8 + 64))
    for w in (mlp.weight[..., :64], mlp.weight[..., 64:], mlp.edge_weight):
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert mlp.out_weight.abs().max() <= math.sqrt(6 / 65)
    assert torch.isclose(mlp.weight[..., :64].var(), torch.tensor(bound**2 / 3), rtol=0.1)


def test_errors():
    mlp = EdgeScoreMLP(D, H, edge_dim=2, groups=2)
    z, edge_index, _ = graph()
    with pytest.raises(ValueError, match="edge_attr is required iff edge_dim > 0"):
        mlp(z.float(), edge_index)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 6\]"):
        mlp(z[:, :3].float(), edge_index, torch.randn(120, 2))
    with pytest.raises(ValueError, match="node_group differs between the two ends"):
        mlp(z.float(), torch.tensor([[0], [1]]), torch.randn(1, 2), node_group=torch.arange(30) % 2)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        EdgeScoreMLP(D, H, groups=0)
