"""The ReFine authors' released target GNNs, rebuilt: the legacy LEConv, the weights, the reference splits."""
import pytest
import torch
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import LEConv

from refine_fast.metrics import correct_subset, needs_ground_truth
from refine_fast.models import (
    LegacyLEConv, ReferenceBA3Net, ReferenceMutagNet, accuracy, load_model, load_reference_model,
    load_reference_splits, reference_split, save_model,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def reference_dir(data_root):
    path = data_root.parent / "reference_models"
    if not (path / "mutag_net_state.pt").is_file():
        pytest.skip(f"the released models are not at {path}")
    return path


def test_legacy_leconv_is_the_pyg1_operator():
    """x_i' = lin3(x_i) + Σ_{j→i} w_ji (lin1(x_i) − lin2(x_j)); PyG 2.x's LEConv swaps i and j."""
    torch.manual_seed(0)
    conv = LegacyLEConv(3, 5)
    x, w = torch.randn(4, 3), torch.rand(3)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    expected = conv.lin3(x)
    for (j, i), wji in zip(edge_index.t().tolist(), w):
        expected[i] = expected[i] + wji * (conv.lin1(x[i]) - conv.lin2(x[j]))
    torch.testing.assert_close(conv(x, edge_index, w), expected)
    modern = LEConv(3, 5)
    modern.load_state_dict(conv.state_dict())
    assert not torch.allclose(modern(x, edge_index, w), expected)
    set_masks(conv, torch.zeros(3), edge_index, apply_sigmoid=False)  # explain masks reach its messages
    try:
        torch.testing.assert_close(conv(x, edge_index, w), conv.lin3(x))
    finally:
        clear_masks(conv)


def test_reference_split_is_python_random_seed0():
    import random
    order = list(range(4337))
    random.seed(0)
    random.shuffle(order)
    split = reference_split("mutag")
    assert split["test"].tolist() == order[:500] and split["val"].tolist() == order[500:1000]
    assert split["train"].tolist() == order[1000:]
    assert [len(reference_split("ba3")[k]) for k in ("train", "val", "test")] == [2200, 400, 400]
    with pytest.raises(ValueError, match="reference_split: dataset"):
        reference_split("mnist")


def test_released_mutagenicity_model(reference_dir, data_root, ba3_cache):
    model = load_reference_model(reference_dir / "mutag_net_state.pt")
    assert isinstance(model, ReferenceMutagNet) and not model.training
    train, val, test = load_reference_splits("mutag", data_root, ba3_cache)
    assert (len(train), len(val), len(test)) == (3337, 500, 500)
    # the figures the reference reports: 401 of its 500 test graphs correct; 86.8% of all 4,337
    assert round(accuracy(model, test) * 500) == 401
    assert accuracy(model, train + val + test) == pytest.approx(0.868, abs=5e-4)


def test_released_ba3motif_model(reference_dir, data_root, ba3_cache):
    model = load_reference_model(reference_dir / "ba3_net_state.pt")
    assert isinstance(model, ReferenceBA3Net)
    train, val, test = load_reference_splits("ba3", data_root, ba3_cache)
    assert (len(train), len(val), len(test)) == (2200, 400, 400)
    assert set(g.graph_index for g in val + test) == set(torch.cat(
        [reference_split("ba3")["val"], reference_split("ba3")["test"]]).tolist())
    assert accuracy(model, val + test) >= 0.995  # dropout off (eval mode)
    assert accuracy(model, train) >= 0.99         # the generated training graphs


def test_which_released_predictions_need_their_ground_truth(reference_dir, data_root, ba3_cache):
    """The facts bench/RESULTS.md ("The ground truth the model needs") builds on: the released BA-3motif
    GNN predicts class 2 whenever the other motifs are absent, and the Mutagenicity GNN rarely needs its
    NO2/NH2 bonds."""
    for name, file, needed in (("ba3", "ba3_net_state.pt", {0: 133, 1: 110, 2: 0}),
                               ("mutag", "mutag_net_state.pt", {0: 5, 1: 0})):
        model = load_reference_model(reference_dir / file)
        test = load_reference_splits(name, data_root, ba3_cache)[2]
        correct = [test[i] for i in correct_subset(model, test)[0].tolist()]
        need = needs_ground_truth(model, correct)
        y = torch.cat([g.y for g in correct])
        assert {c: int(need[y == c].sum()) for c in needed} == needed, name


def test_released_models_load_through_load_model(reference_dir, tmp_path):
    model = load_model(reference_dir / "ba3_net_state.pt")
    assert isinstance(model, ReferenceBA3Net)
    save_model(model, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_load_reference_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        load_reference_model(tmp_path / "missing.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither the reference's Mutagenicity nor its BA-3motif"):
        load_reference_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt is not a readable"):
        load_reference_model(tmp_path / "junk.pt")
    state = ReferenceMutagNet().state_dict()
    state["lin2.weight"] = torch.zeros(3, 16)
    torch.save(state, tmp_path / "wrong_shape.pt")
    with pytest.raises(ValueError, match="does not fit ReferenceMutagNet"):
        load_reference_model(tmp_path / "wrong_shape.pt")
