import numpy as np
import pytest
import torch

from refine_fast.datasets import (
    BA3Motif, MNISTSuperpixels75, Mutagenicity, find_tu_raw_dir, load_ba3motif_official, read_mnist_images,
    superpixel_graph,
)

pytestmark = pytest.mark.usefixtures("single_thread")

MOTIF_SIZE = {0: 5, 1: 9, 2: 5}
COPIES = {0: (2, 4), 1: (1, 3), 2: (2, 4)}


def _stats(graphs):
    y = np.array([int(d.y) for d in graphs])
    nodes = np.array([d.num_nodes for d in graphs])
    edges = np.array([d.num_edges for d in graphs])
    return y, nodes, edges


# ---- BA-3motif -------------------------------------------------------------------------------

def test_ba3_matches_official_statistics(ba3_full, ba3_official):
    official = ba3_official
    assert len(official) == 800 and len(ba3_full) == 3000
    y, nodes, edges = _stats(ba3_full)
    oy, onodes, oedges = _stats(official)
    assert nodes.mean() == pytest.approx(onodes.mean(), rel=0.05)
    assert edges.mean() == pytest.approx(oedges.mean(), rel=0.05)
    gt = np.array([int(d.edge_gt.sum()) for d in ba3_full])
    ogt = np.array([int(d.edge_gt.sum()) for d in official])
    assert gt.mean() == pytest.approx(ogt.mean(), rel=0.05)
    for c in range(3):
        assert (y == c).sum() == 1000
        assert nodes[y == c].mean() == pytest.approx(onodes[oy == c].mean(), rel=0.05)
        assert edges[y == c].mean() == pytest.approx(oedges[oy == c].mean(), rel=0.05)
        copies = (nodes[y == c] - 6) / MOTIF_SIZE[c]
        ocopies = (onodes[oy == c] - 6) / MOTIF_SIZE[c]
        lo, hi = COPIES[c]
        assert set(copies.tolist()) == set(ocopies.tolist()) == set(range(lo, hi + 1))


def _first_motif(d, size):
    """Edges inside the first motif copy (local ids 0..size-1) of a graph."""
    src, dst = d.edge_index
    inside = (src >= 6) & (dst >= 6) & (src < 6 + size) & (dst < 6 + size)
    return set(map(tuple, (d.edge_index[:, inside] - 6).t().tolist()))


def test_ba3_motifs_wired_as_official(ba3_full, ba3_official):
    for c in range(3):
        generated = _first_motif(ba3_full[1000 * c], MOTIF_SIZE[c])
        official = _first_motif(next(d for d in ba3_official if int(d.y) == c), MOTIF_SIZE[c])
        assert generated == official


def test_ba3_graph_format(ba3_full):
    split = ba3_full.split_idx
    assert [len(split[k]) for k in ("train", "val", "test")] == [2200, 400, 400]
    assert torch.cat(list(split.values())).sort().values.equal(torch.arange(3000))
    for i in (0, 1500, 2999):
        d = ba3_full[i]
        assert int(d.y) == i // 1000
        src, dst = d.edge_index
        assert bool((src < dst).all())  # once, low -> high, no self loops
        key = src * d.num_nodes + dst
        assert key.unique().numel() == key.numel()
        assert d.edge_attr.shape == (d.num_edges, 1) and bool((d.edge_attr == 1).all())
        assert d.edge_gt.dtype == torch.bool
        assert d.edge_gt.equal((d.role_id[src] > 0) & (d.role_id[dst] > 0))
        noise = d.x - 0.25 * torch.nn.functional.one_hot(d.role_id, 4)
        assert d.x.shape == (d.num_nodes, 4) and bool((noise >= 0).all() & (noise <= 0.75).all())
        assert bool((d.role_id[:6] == 0).all() & (d.role_id[6:] > 0).all())
    train, val, test = ba3_full.splits()
    assert len(train) == 2200 and len(test) == 400


def test_ba3_seeded_and_both_directions(ba3_small, tmp_path):
    again = BA3Motif(tmp_path, seed=0, graphs_per_class=20)
    assert torch.equal(again._data.x, ba3_small._data.x)
    assert torch.equal(again._data.edge_index, ba3_small._data.edge_index)
    assert torch.equal(again.split_idx["test"], ba3_small.split_idx["test"])
    other = BA3Motif(tmp_path, seed=1, graphs_per_class=20)
    assert not torch.equal(other._data.x, ba3_small._data.x)
    both = BA3Motif(tmp_path, seed=0, graphs_per_class=20, both_directions=True)
    d, d2 = ba3_small[5], both[5]
    assert d2.num_edges == 2 * d.num_edges
    assert d2.edge_gt.sum() == 2 * d.edge_gt.sum()
    assert set(map(tuple, d2.edge_index.t().tolist())) == (
        set(map(tuple, d.edge_index.t().tolist())) | set(map(tuple, d.edge_index.flip(0).t().tolist())))


def test_ba3_official_loader(ba3_official, tmp_path):
    official = ba3_official
    d = official[0]
    assert d.x.shape == (d.num_nodes, 4) and d.edge_gt.dtype == torch.bool
    assert sum(int(g.edge_gt.sum()) for g in official) > 0.5 * sum(g.num_edges for g in official)
    with pytest.raises(FileNotFoundError, match="ba3motif_official_subset800"):
        load_ba3motif_official(tmp_path / "missing.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match="cut.npz is not a readable npz file"):
        load_ba3motif_official(tmp_path / "cut.npz")
    np.savez(tmp_path / "partial.npz", y=np.zeros(2), node_ptr=np.zeros(3))
    with pytest.raises(ValueError, match="partial.npz lacks the arrays \\['edge_ptr', 'edge_index'"):
        load_ba3motif_official(tmp_path / "partial.npz")


# ---- Mutagenicity ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mutag(data_root, tmp_path_factory):
    return Mutagenicity(data_root / "mutagenicity", cache_dir=tmp_path_factory.mktemp("mutag"))


def test_mutagenicity_counts_and_ground_truth(mutag, data_root):
    assert len(mutag) == 4337
    assert torch.bincount(mutag.y).tolist() == [2401, 1936]
    assert mutag._data.x.shape == (131488, 14) and mutag._data.edge_attr.shape == (266894, 3)
    gt = mutag._data.edge_gt
    raw_gt = np.loadtxt(data_root / "mutagenicity" / "raw" / "Mutagenicity_edge_gt.txt")
    assert gt.dtype == torch.bool and int(gt.sum()) == int(raw_gt.sum())
    with_gt = [i for i in range(len(mutag)) if mutag[i].edge_gt.any()]
    assert len(with_gt) == 1356
    d = mutag[with_gt[0]]
    atoms = d.x.argmax(-1)[d.edge_index[:, d.edge_gt]]
    assert bool(((atoms == 4).any(0)).all())  # every NO2 / NH2 bond touches a nitrogen
    assert [len(mutag.split_idx[k]) for k in ("train", "val", "test")] == [3470, 434, 433]


def test_mutagenicity_raw_dir_and_missing_files(data_root, tmp_path):
    raw = find_tu_raw_dir(data_root / "mutagenicity")
    assert raw == data_root / "mutagenicity" / "raw"
    assert find_tu_raw_dir(raw) == raw
    with pytest.raises(FileNotFoundError, match="Mutagenicity_A.txt"):
        Mutagenicity(tmp_path, cache_dir=tmp_path / "cache")


# ---- MNIST superpixels -----------------------------------------------------------------------

def test_superpixel_graph(data_root):
    images, labels = read_mnist_images(data_root / "mnist")
    assert images.shape == (15000, 28, 28) and labels.shape == (15000,)
    assert set(np.unique(labels).tolist()) == set(range(10))
    d = superpixel_graph(images[0])
    assert 55 <= d.num_nodes <= 90 and d.x.shape == (d.num_nodes, 3)
    assert bool((d.x >= 0).all() & (d.x <= 1).all())
    pairs = set(map(tuple, d.edge_index.t().tolist()))
    assert pairs == {(j, i) for i, j in pairs} and all(i != j for i, j in pairs)
    assert d.edge_attr.shape == (d.num_edges, 2) and bool((d.edge_attr >= 0).all() & (d.edge_attr <= 1).all())
    lit = d.x[:, 0] > 0
    assert d.edge_gt.equal(lit[d.edge_index[0]] & lit[d.edge_index[1]])
    assert 0 < int(d.edge_gt.sum()) < d.num_edges


def test_mnist_superpixels_dataset(data_root, tmp_path):
    ds = MNISTSuperpixels75(data_root / "mnist", cache_dir=tmp_path, split_sizes=(12, 4, 4), progress=False)
    assert len(ds) == 20 and [len(ds.split_idx[k]) for k in ("train", "val", "test")] == [12, 4, 4]
    assert ds[0].edge_attr.size(1) == 2 and ds[0].y.shape == (1,)
    cached = MNISTSuperpixels75(data_root / "mnist", cache_dir=tmp_path, split_sizes=(12, 4, 4))
    assert torch.equal(cached._data.x, ds._data.x)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        MNISTSuperpixels75(tmp_path / "nowhere", cache_dir=tmp_path / "c", split_sizes=(1, 1, 1))


# ---- raw files checked, caches keyed by content ----------------------------------------------

def _small_tu(data_root, folder, graphs=20):
    """The first ``graphs`` Mutagenicity molecules as TU raw files in ``folder/raw`` (fast to process)."""
    src = data_root / "mutagenicity" / "raw"
    raw = folder / "raw"
    raw.mkdir(parents=True)
    lines = {p: (src / f"Mutagenicity_{p}.txt").read_text().splitlines()
             for p in ("A", "graph_indicator", "graph_labels", "node_labels", "edge_labels", "edge_gt")}
    nodes = sum(1 for g in lines["graph_indicator"] if int(g) <= graphs)
    edges = [k for k, line in enumerate(lines["A"]) if int(line.split(",")[0]) <= nodes]
    keep = {"graph_indicator": range(nodes), "node_labels": range(nodes), "graph_labels": range(graphs),
            "A": edges, "edge_labels": edges, "edge_gt": edges}
    for part, rows in keep.items():
        (raw / f"Mutagenicity_{part}.txt").write_text("".join(lines[part][k] + "\n" for k in rows))
    return folder


def _edit(path, change):
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in change(lines)))


def test_mutagenicity_cache_is_keyed_by_the_raw_files(data_root, tmp_path):
    """Another data root with other labels is processed on its own, never served the first root's data."""
    first = Mutagenicity(_small_tu(data_root, tmp_path / "a"), cache_dir=tmp_path / "cache")
    other = _small_tu(data_root, tmp_path / "b")
    _edit(other / "raw" / "Mutagenicity_graph_labels.txt", lambda lines: [str(1 - int(v)) for v in lines])
    second = Mutagenicity(other, cache_dir=tmp_path / "cache")
    assert len(first) == len(second) == 20 and torch.equal(second.y, 1 - first.y)
    assert first.processed_dir != second.processed_dir
    again = Mutagenicity(tmp_path / "a", cache_dir=tmp_path / "cache")  # the same content: the same cache
    assert again.processed_dir == first.processed_dir and torch.equal(again.y, first.y)


@pytest.mark.parametrize("part,change,message", [
    ("graph_labels", lambda lines: lines[:-10],
     "Mutagenicity_graph_labels.txt has 10 lines, expected 20 \\(one per graph of Mutagenicity_graph_indicator.txt"),
    ("node_labels", lambda lines: lines + ["3"], "Mutagenicity_node_labels.txt has \\d+ lines, expected \\d+ "
                                                  "\\(one per node"),
    ("edge_labels", lambda lines: lines[1:], "Mutagenicity_edge_labels.txt has \\d+ lines, expected \\d+ "
                                             "\\(one per edge of Mutagenicity_A.txt"),
    ("edge_gt", lambda lines: lines[:-1], "Mutagenicity_edge_gt.txt has \\d+ lines, expected \\d+"),
    ("A", lambda lines: lines[:4] + ["1, x"] + lines[5:],
     "Mutagenicity_A.txt line 5: expected 2 comma-separated integers, got '1, x'"),
    ("A", lambda lines: lines[:2] + ["1, 99999"] + lines[3:], "Mutagenicity_A.txt line 3: node ids \\[1, 99999\\] "
                                                              "outside 1..\\d+"),
    ("A", lambda lines: lines[:2] + ["1, 30"] + lines[3:], "Mutagenicity_A.txt line 3: edge \\[1, 30\\] joins graphs "
                                                           "\\[1, 2\\]"),
    ("graph_indicator", lambda lines: lines[:3] + ["2"] + lines[4:],
     "Mutagenicity_graph_indicator.txt line 5: graph id 1 is below 1 or below the previous line's"),
    ("graph_labels", lambda lines: ["0.5"] + lines[1:],
     "Mutagenicity_graph_labels.txt line 1: expected 1 comma-separated integer, got '0.5'"),
    ("graph_labels", lambda lines: [], "Mutagenicity_graph_labels.txt is empty"),
])
def test_mutagenicity_names_the_wrong_file_and_line(data_root, tmp_path, part, change, message):
    root = _small_tu(data_root, tmp_path / "m")
    _edit(root / "raw" / f"Mutagenicity_{part}.txt", change)
    with pytest.raises(ValueError, match=message):
        Mutagenicity(root, cache_dir=tmp_path / "cache")


def test_mnist_names_the_wrong_file(data_root, tmp_path):
    import gzip
    import shutil

    root = tmp_path / "mnist"
    shutil.copytree(data_root / "mnist", root)
    raw = gzip.open(root / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: expected an idx file .* got header "
                                         "\\[2051, 10000, 28, 28\\] and 7839900 bytes"):
        read_mnist_images(root)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        MNISTSuperpixels75(root, cache_dir=tmp_path / "c", split_sizes=(1, 1, 1))
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
        read_mnist_images(root)
    shutil.copy(data_root / "mnist" / "t10k-labels-idx1-ubyte.gz", root)
    lines = gzip.open(root / "mnist_5k.csv.gz", "rt").read().splitlines()
    lines[3] = ",".join(["0"] * 783 + ["256", "3"])
    with gzip.open(root / "mnist_5k.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="mnist_5k.csv.gz line 4: expected 784 pixels in 0..255"):
        read_mnist_images(root)
