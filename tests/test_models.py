import copy

import pytest
import torch
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.loader import DataLoader

from refine_fast.models import (
    REGISTRY, BA3MotifNet, MNISTSuperpixelNet, MutagenicityNet, load_model, load_splits, save_model,
    train_for_dataset, train_gnn,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _random_batch(num_features, edge_dim, num_graphs=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    nodes = 7 * num_graphs
    batch = torch.arange(num_graphs).repeat_interleave(7)
    src = torch.randint(0, 7, (30 * num_graphs,), generator=g)
    dst = torch.randint(0, 7, (30 * num_graphs,), generator=g)
    offset = torch.arange(num_graphs).repeat_interleave(30) * 7
    edge_index = torch.stack([src + offset, dst + offset])
    return (torch.rand(nodes, num_features, generator=g), edge_index,
            torch.rand(edge_index.size(1), edge_dim, generator=g), batch)


MODELS = [(BA3MotifNet, 4, 1, 3), (MutagenicityNet, 14, 3, 2), (MNISTSuperpixelNet, 3, 2, 10)]


@pytest.mark.parametrize("cls,num_features,edge_dim,num_classes", MODELS)
def test_forward_embed_and_edge_masks(cls, num_features, edge_dim, num_classes):
    torch.manual_seed(0)
    model = cls().eval()
    x, edge_index, edge_attr, batch = _random_batch(num_features, edge_dim)
    out = model(x, edge_index, edge_attr, batch)
    assert out.shape == (4, num_classes)
    assert model.embed(x, edge_index, edge_attr, batch).shape == (4, model.config["hidden"])
    assert model(x[:7], edge_index[:, :30], edge_attr[:30]).shape == (1, num_classes)  # batch=None
    # PyG's explain masks reach every message: ones change nothing, zeros change the output.
    set_masks(model, torch.ones(edge_index.size(1)), edge_index, apply_sigmoid=False)
    ones = model(x, edge_index, edge_attr, batch)
    set_masks(model, torch.zeros(edge_index.size(1)), edge_index, apply_sigmoid=False)
    zeros = model(x, edge_index, edge_attr, batch)
    clear_masks(model)
    assert torch.allclose(ones, out, atol=1e-6)
    assert not torch.allclose(zeros, out, atol=1e-4)
    # Gradient flows to a soft edge mask (what the explainers optimize).
    mask = torch.full((edge_index.size(1),), 0.5, requires_grad=True)
    set_masks(model, mask, edge_index, apply_sigmoid=False)
    model(x, edge_index, edge_attr, batch).sum().backward()
    clear_masks(model)
    assert mask.grad is not None and mask.grad.abs().sum() > 0


@pytest.mark.parametrize("cls,num_features,edge_dim,num_classes", MODELS)
def test_save_load_roundtrip(cls, num_features, edge_dim, num_classes, tmp_path):
    torch.manual_seed(1)
    model = cls(hidden=16).eval()
    path = save_model(model, tmp_path / "m.pt", extra={"test_acc": 0.5})
    blob = torch.load(path, weights_only=True)
    assert blob["model_class"] == cls.__name__ and blob["config"]["hidden"] == 16
    loaded = load_model(path)
    assert type(loaded) is cls and not loaded.training and loaded.extra == {"test_acc": 0.5}
    x, edge_index, edge_attr, batch = _random_batch(num_features, edge_dim)
    assert torch.equal(loaded(x, edge_index, edge_attr, batch), model(x, edge_index, edge_attr, batch))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "none.pt")
    torch.save({"model_class": "Nope", "config": {}, "state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="Nope"):
        load_model(tmp_path / "bad.pt")
    path = save_model(BA3MotifNet(hidden=8), tmp_path / "m.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.pt is not a readable model file"):
        load_model(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt is not a readable model file"):
        load_model(tmp_path / "empty.pt")
    blob = torch.load(path, weights_only=True)
    blob["config"]["hidden"] = 9
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="mismatch.pt holds a BA3MotifNet whose config or weights do not fit"):
        load_model(tmp_path / "mismatch.pt")


def test_train_gnn_learns_ba3(ba3_small):
    train, val, test = ba3_small.splits()
    torch.manual_seed(0)
    model = BA3MotifNet(hidden=32)
    before = copy.deepcopy(model.state_dict())
    metrics = train_gnn(model, train, val, test, epochs=3, lr=3e-3, batch_size=16, progress=False)
    assert set(metrics) >= {"train_acc", "val_acc", "test_acc", "best_epoch", "epochs"}
    assert 1 <= metrics["best_epoch"] <= 3 and not model.training
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    batch = next(iter(DataLoader(train, batch_size=len(train))))
    assert model(batch.x, batch.edge_index, batch.edge_attr, batch.batch).shape == (len(train), 3)


def test_registry_and_train_for_dataset(ba3_full, ba3_cache, tmp_path):
    assert set(REGISTRY) == {"ba3", "mutag", "mnist"}
    dataset, (train, val, test) = load_splits("ba3", "unused", cache_dir=ba3_cache)
    assert len(train) == 2200 and torch.equal(dataset.split_idx["test"], ba3_full.split_idx["test"])
    metrics = train_for_dataset("ba3", "unused", tmp_path / "out", epochs=1, progress=False, cache_dir=ba3_cache)
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_acc"] <= 1.0
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert isinstance(load_model(metrics["model_path"]), BA3MotifNet)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_splits("vg5", "unused", cache_dir=ba3_cache)
