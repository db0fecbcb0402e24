"""Pinned results: a few graphs' importances and ACC@ρ, computed once and stored as literals.

Restructuring code must not change what ReFine computes. These literals were produced by the code of
main at 402ccc3 (before issue 14's restructuring) and are compared with a tolerance of 1e-6 (float32
rounding). Every field of :class:`ReFineConfig` is given explicitly, so a change of the defaults does
not move them; a new or renamed field fails :func:`test_every_config_field_is_pinned` until it is added
to ``CONFIG`` (with the value that reproduces the old behaviour). Regenerate the literals only for an
intended change of the numerics: ``python tests/test_pinned.py`` prints them.
"""
import dataclasses

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv, GINEConv, global_add_pool, global_mean_pool

from refine_fast import ReFine, ReFineConfig
from refine_fast.metrics import acc_auc

from test_explain import make_dataset

CONFIG = dict(hidden=8, num_layers=2, epochs=2, lr=1e-2, ratio=0.4, gamma=0.5, tau=0.1, temperature=1.0,
              batch_size=4, size_coef=1e-4, entropy_coef=1e-2, fine_tune_lr=1e-2, fine_tune_steps=3,
              class_wise=True, fidelity="log", reduction="mean", contrastive="infonce",
              representation="attributor", log2_noise=False, mask_sigmoid=False, explain_norm="running",
              train_on="all", pretrain_norm="batch", bias_init="zeros")


class GCN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.lin = GCNConv(4, 16), GCNConv(16, 16), torch.nn.Linear(16, 3)

    def forward(self, x, edge_index, batch=None):
        x = self.conv2(self.conv1(x, edge_index).relu(), edge_index).relu()
        return self.lin(global_mean_pool(x, batch))


class GINE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        mlp = lambda i: torch.nn.Sequential(torch.nn.Linear(i, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))  # noqa
        self.conv1, self.conv2 = GINEConv(mlp(4), edge_dim=2), GINEConv(mlp(16), edge_dim=2)
        self.lin = torch.nn.Linear(16, 3)

    def forward(self, x, edge_index, batch=None, edge_attr=None):
        x = self.conv2(self.conv1(x, edge_index, edge_attr).relu(), edge_index, edge_attr).relu()
        return self.lin(global_add_pool(x, batch))


def _trained(model, graphs):
    """``model`` after 20 seeded Adam steps on ``graphs`` (eval mode)."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    b = Batch.from_data_list(graphs)
    kw = {"edge_attr": b.edge_attr} if b.get("edge_attr") is not None else {}
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(b.x, b.edge_index, b.batch, **kw), b.y).backward()
        opt.step()
    return model.eval()


def compute(edge_dim: int):
    """``({steps: [importance [E_g]] of 3 graphs}, {steps: ACC@ρ over ρ = 0.1..1.0})`` of a ReFine
    pre-trained on 12 graphs (one thread, fixed seeds); ``edge_dim`` 0 (GCN) or 2 (GINE, edge features)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        graphs = make_dataset(15, seed=3, edge_dim=edge_dim)
        model = _trained(GINE() if edge_dim else GCN(), graphs[:12])
        refine = ReFine(model, 3, 4, edge_dim, config=ReFineConfig(**CONFIG), seed=1)
        refine.pretrain(graphs[:12], seed=2, progress=False)
        explained = graphs[12:]
        imps, accs = {}, {}
        for steps in (0, 3):
            imps[steps] = refine.explain(explained, steps=steps, seed=4, progress=False)
            accs[steps] = list(acc_auc(model, explained, imps[steps])["acc"].values())
        return imps, accs
    finally:
        torch.set_num_threads(threads)


# Produced by main at 402ccc3; see the module docstring.
EXPECTED = {
    (0, 0): {
        "importance": [
            [0.50536054, 0.48890555, 0.53355235, 0.51962394, 0.51796353, 0.50704038, 0.50483197, 0.50789326,
             0.4971855, 0.50548565, 0.50497067, 0.50597882, 0.51142728, 0.47540355, 0.48465845, 0.49066058,
             0.49404004, 0.50848991, 0.49862283, 0.51482922, 0.50643486, 0.48588932],
            [0.32039595, 0.36418968, 0.36073518, 0.30940586, 0.33415228, 0.40622425, 0.31658298, 0.45810744,
             0.37886944, 0.34119773, 0.39978328, 0.36399242, 0.40755135, 0.39626786, 0.29401731, 0.34152281,
             0.33171442, 0.34631419, 0.32689846, 0.37344739, 0.31682056, 0.44268584, 0.36844254, 0.33949572,
             0.42815971, 0.37356305, 0.4192073, 0.39564726],
            [0.52389657, 0.54993075, 0.52306819, 0.55977553, 0.55487955, 0.54143947, 0.53033197, 0.55018067,
             0.53897154, 0.55736446, 0.54692638, 0.56504726, 0.5234502, 0.5175091, 0.51951075, 0.50575691,
             0.56575125, 0.52816308, 0.54323834, 0.54686326, 0.53119916, 0.51090813],
        ],
        "acc": [0.66666669, 0.66666669, 1.0, 1.0, 1.0, 0.66666669, 0.66666669, 1.0, 1.0, 1.0],
    },
    (0, 3): {
        "importance": [
            [0.35385916, 0.3348372, 0.39188987, 0.36304864, 0.41216609, 0.39350408, 0.40684751, 0.40880933,
             0.39175165, 0.39206097, 0.38303083, 0.3684009, 0.34971517, 0.3355135, 0.33681378, 0.35677034,
             0.38109055, 0.40892205, 0.39645001, 0.41693199, 0.38998497, 0.34775415],
            [0.12790583, 0.14547646, 0.1586491, 0.11461285, 0.12107099, 0.20958565, 0.1314436, 0.36857107,
             0.30164564, 0.23485434, 0.28891346, 0.28555766, 0.31740889, 0.22337353, 0.12848164, 0.17152704,
             0.12186348, 0.15059155, 0.13746542, 0.20879883, 0.11334802, 0.35422388, 0.28363979, 0.24440405,
             0.31154877, 0.29580206, 0.31691143, 0.19541463],
            [0.68096989, 0.72479379, 0.65613991, 0.72361916, 0.72382092, 0.72515661, 0.71665347, 0.73436826,
             0.71816826, 0.72845143, 0.7258954, 0.72558129, 0.68778616, 0.70337081, 0.67113644, 0.66214806,
             0.74658716, 0.7249589, 0.73948538, 0.73749435, 0.70701391, 0.70995194],
        ],
        "acc": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    },
    (2, 0): {
        "importance": [
            [0.46788046, 0.56252015, 0.56699938, 0.40540507, 0.46114773, 0.60374284, 0.38328809, 0.2882379,
             0.41285837, 0.38064754, 0.36544096, 0.46273789, 0.49473909, 0.55759221, 0.61943322, 0.42548561,
             0.48588678, 0.56349468, 0.30966458, 0.39379889, 0.34606978, 0.35849902, 0.34652504, 0.47320157],
            [0.5605523, 0.45911789, 0.60087705, 0.43676221, 0.45048723, 0.38794169, 0.54246128, 0.42342439,
             0.46354392, 0.4142231, 0.48285756, 0.44954589, 0.42598063, 0.45287549, 0.35401717, 0.38560542,
             0.48111326, 0.51995862, 0.54215044, 0.72909182, 0.44483873, 0.43752566, 0.6974889, 0.67314446,
             0.69958216, 0.44749773, 0.50128973, 0.46526128, 0.46159407, 0.44184577, 0.49279448, 0.47765541],
            [0.43938899, 0.48572823, 0.44233885, 0.47208703, 0.45709434, 0.60367727, 0.58233333, 0.51338857,
             0.52586812, 0.5171898, 0.57318389, 0.65959823, 0.56766903, 0.55072486, 0.57510465, 0.42430696,
             0.63308644, 0.64043027, 0.71697736, 0.672144, 0.51848769, 0.61348778],
        ],
        "acc": [0.66666669, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    },
    (2, 3): {
        "importance": [
            [0.1822231, 0.25880766, 0.27283034, 0.19322568, 0.24069633, 0.41794753, 0.13582794, 0.11699234,
             0.15224001, 0.13721874, 0.13089885, 0.15717946, 0.23638442, 0.2426597, 0.31067365, 0.22604555,
             0.2656337, 0.34270942, 0.11255694, 0.1608748, 0.12245782, 0.13219342, 0.12056374, 0.12717728],
            [0.63705641, 0.4659155, 0.7068193, 0.50653827, 0.36045125, 0.33420634, 0.6353336, 0.48742253,
             0.51502383, 0.18344882, 0.21785365, 0.18962213, 0.20395035, 0.18759602, 0.17045866, 0.19702335,
             0.55409342, 0.57312936, 0.68314582, 0.7979697, 0.36155385, 0.40518737, 0.78366446, 0.75983846,
             0.77344626, 0.19171643, 0.21314596, 0.23229499, 0.22040115, 0.19074093, 0.23786387, 0.27497259],
            [0.87321347, 0.85919517, 0.8152979, 0.86965483, 0.79010904, 0.90820557, 0.90501386, 0.87983048,
             0.88254076, 0.80613047, 0.82407135, 0.89249682, 0.82023835, 0.83411109, 0.84389836, 0.81460077,
             0.8454423, 0.85009861, 0.83457398, 0.81989563, 0.80504483, 0.91209191],
        ],
        "acc": [0.66666669, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    },
}


def test_every_config_field_is_pinned():
    assert set(CONFIG) == {f.name for f in dataclasses.fields(ReFineConfig)}


@pytest.mark.parametrize("edge_dim", [0, 2])
def test_importances_and_acc_are_unchanged(edge_dim):
    imps, accs = compute(edge_dim)
    for steps in (0, 3):
        expected = EXPECTED[edge_dim, steps]
        got = [t.tolist() for t in imps[steps]]
        assert [len(t) for t in got] == [len(t) for t in expected["importance"]]
        for g, (a, b) in enumerate(zip(got, expected["importance"])):
            assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=0, atol=1e-6), (edge_dim, steps, g)
        assert accs[steps] == pytest.approx(expected["acc"], abs=1e-6)


if __name__ == "__main__":
    print("EXPECTED = {")
    for edge_dim in (0, 2):
        imps, accs = compute(edge_dim)
        for steps in (0, 3):
            print(f"    ({edge_dim}, {steps}): {{")
            print('        "importance": [')
            for t in imps[steps]:
                values = [f"{v:.8g}" for v in t.tolist()]
                lines = [", ".join(values[i:i + 8]) for i in range(0, len(values), 8)]
                print("            [" + (",\n             ".join(lines)) + "],")
            print("        ],")
            print(f'        "acc": [{", ".join(f"{a:.8g}" for a in accs[steps])}],')
            print("    },")
    print("}")
