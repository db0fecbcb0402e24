"""Streaming explanation from a PyG OnDiskDataset: the same importances as one in-memory call, only
unfinished chunks recomputed on resume, and clear errors for folders that are not graph sets."""
import sqlite3

import pytest
import torch
from torch_geometric.data import Data

from refine_fast.datasets import open_graphs, write_graphs
from refine_fast.explain import ReFine
from refine_fast.store import ExplanationStore, load_explanations
from refine_fast.stream import balance_chunks, chunk_edges, explain_to_store, fetch

STEPS = 2


@pytest.fixture(scope="module")
def refine(ba3_model):
    return ReFine(ba3_model, 3, 4, hidden=12, batch_size=16, seed=3)


@pytest.fixture(scope="module")
def on_disk(ba3_small, tmp_path_factory):
    """The 60 small BA-3motif graphs in an OnDiskDataset folder, written 7 at a time from a generator."""
    root = tmp_path_factory.mktemp("graphs")
    write_graphs(root, (ba3_small[i] for i in range(len(ba3_small))), batch_size=7).close()
    return root


def _same_graph(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
                                        for k in a.keys())


def test_write_and_open_round_trip(ba3_small, on_disk):
    graphs = open_graphs(on_disk)
    assert len(graphs) == len(ba3_small)
    assert all(_same_graph(graphs[i], ba3_small[i]) for i in range(len(ba3_small)))
    # Each graph stores its own tensors, not the in-memory dataset's whole storage.
    assert (on_disk / "processed" / "sqlite.db").stat().st_size < 20_000 * len(ba3_small)
    with pytest.raises(FileExistsError, match="already holds a graph set"):
        write_graphs(on_disk, [ba3_small[0]])


def test_fetch_uses_multi_get_and_respects_slices(ba3_small, on_disk):
    graphs = open_graphs(on_disk)
    got = fetch(graphs, torch.tensor([5, 2, 40]))
    assert all(_same_graph(g, ba3_small[i]) for g, i in zip(got, (5, 2, 40)))
    sliced = graphs[10:20]  # a view: position 3 is database row 13
    assert _same_graph(fetch(sliced, [3])[0], ba3_small[13])
    assert _same_graph(fetch(list(ba3_small), [7])[0], ba3_small[7])  # plain sequences work too
    assert chunk_edges(graphs, range(60), [(0, 4), (4, 6)]) == [
        sum(ba3_small[i].num_edges for i in range(0, 4)), sum(ba3_small[i].num_edges for i in range(4, 6))]


@pytest.mark.parametrize("ids", [range(60), torch.arange(5, 55).flip(0)], ids=["all", "subset"])
def test_stream_equals_in_memory(refine, ba3_small, on_disk, tmp_path, ids):
    store = ExplanationStore(tmp_path, len(ids), 16, {"seed": 7})
    assert explain_to_store(refine, open_graphs(on_disk), store, ids, steps=STEPS, seed=7, progress=False) == len(ids)
    got_ids, got, _ = load_explanations(store.merge())
    ids = list(map(int, ids))
    assert got_ids.tolist() == ids
    # Exactly ReFine.explain on the same graphs in memory, chunk by chunk (same seed and ids) ...
    expected = [t for s in range(0, len(ids), 16) for t in refine.explain(
        [ba3_small[i] for i in ids[s:s + 16]], steps=STEPS, seed=7, graph_ids=ids[s:s + 16], progress=False)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    # ... and one call on all of them up to float rounding (other batches pad to other sizes).
    whole = refine.explain([ba3_small[i] for i in ids], steps=STEPS, seed=7, graph_ids=ids, progress=False)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(got, whole))


class CountingReFine:
    """A ReFine that records how many graphs each explain call received."""

    def __init__(self, refine):
        self.refine, self.calls = refine, []

    def explain(self, graphs, **kwargs):
        self.calls.append(len(graphs))
        return self.refine.explain(graphs, **kwargs)


def test_partial_run_resumes_only_missing_chunks(refine, on_disk, tmp_path):
    graphs = open_graphs(on_disk)
    store = ExplanationStore(tmp_path / "full", 60, 16, {})
    explain_to_store(refine, graphs, store, steps=STEPS, progress=False)
    full = load_explanations(store.merge())

    part = ExplanationStore(tmp_path / "part", 60, 16, {})
    counting = CountingReFine(refine)
    explain_to_store(counting, graphs, part, chunks=[(16, 32)], steps=STEPS, progress=False)  # "killed" after one
    part = ExplanationStore(tmp_path / "part", 60, 16, {})
    assert list(part.pending()) == [(0, 16), (32, 48), (48, 60)]
    with pytest.raises(RuntimeError, match="not finished"):
        load_explanations(part.dir)  # an unmerged, unfinished run is not read
    assert explain_to_store(counting, graphs, part, steps=STEPS, progress=False) == 44
    assert counting.calls == [16, 16, 16, 12]
    assert explain_to_store(counting, graphs, part, steps=STEPS, progress=False) == 0
    # Unmerged chunks read like the merged file, and merging gives the uninterrupted run's result.
    for ids, imps, _ in (load_explanations(part.dir), load_explanations(part.merge())):
        assert torch.equal(ids, full[0]) and all(torch.equal(a, b) for a, b in zip(imps, full[1]))


def test_ids_must_match_the_store(refine, on_disk, tmp_path):
    with pytest.raises(ValueError, match="ids has 60 graphs, the store 10"):
        explain_to_store(refine, open_graphs(on_disk), ExplanationStore(tmp_path, 10, 4, {}), progress=False)


def test_open_graphs_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        open_graphs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a graph set folder"):
        open_graphs(tmp_path)
    (tmp_path / "processed").mkdir()
    db = tmp_path / "processed" / "sqlite.db"
    db.write_text("not a database, just text" * 10)
    with pytest.raises(ValueError, match="not a sqlite database"):
        open_graphs(tmp_path)
    db.unlink()
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE MyGraphs (id INTEGER PRIMARY KEY, COL_0 BLOB)")
    with pytest.raises(ValueError, match="tables \\['MyGraphs'\\], not a refine_fast graph set"):
        open_graphs(tmp_path)
    with sqlite3.connect(db) as con:  # opening did not add a table
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["MyGraphs"]


class Payload:
    """Unpickling this runs code: what a graph set must never be able to do."""
    ran = []

    def __reduce__(self):
        return (Payload.ran.append, ("code ran",))


def test_pickled_graph_sets_are_refused_unread(ba3_small, tmp_path):
    """A plain OnDiskDataset folder stores pickled rows; opening it is refused before any row is read."""
    from torch_geometric.data import OnDiskDataset

    pickled = OnDiskDataset(str(tmp_path / "pickled"), log=False)
    graph = ba3_small[0].clone()
    graph.payload = Payload()
    pickled.extend([graph])
    pickled.close()
    with pytest.raises(ValueError, match="stores pickled rows .*write_graphs\\(NEW_ROOT, OnDiskDataset"):
        open_graphs(tmp_path / "pickled")
    assert Payload.ran == []


def test_schema_is_checked_on_write(ba3_small, tmp_path):
    graphs = [ba3_small[i] for i in range(3)]
    wide = graphs[1].clone()
    wide.x = torch.rand(wide.num_nodes, 5)
    with pytest.raises(ValueError, match="graph 1: attribute 'x' is torch.float32 \\[\\d+, 5\\], the schema's "
                                         "float32 \\[-1, 4\\]"):
        write_graphs(tmp_path / "a", [graphs[0], wide])
    assert not (tmp_path / "a" / "processed" / "sqlite.db").exists()
    assert list((tmp_path / "a" / "processed").iterdir()) == []  # the temporary database is gone
    extra = graphs[2].clone()
    extra.note = torch.zeros(1)
    with pytest.raises(ValueError, match="graph 2 has attributes .*'note'.*, the graph set's schema"):
        write_graphs(tmp_path / "b", graphs[:2] + [extra], batch_size=1)
    other = graphs[0].clone()
    other.meta = {"a": 1}
    with pytest.raises(ValueError, match="attribute 'meta' is a dict; a graph set stores tensors, int, float"):
        write_graphs(tmp_path / "c", [other])
    with pytest.raises(ValueError, match="graphs is empty"):
        write_graphs(tmp_path / "d", [])
    scalars = Data(x=torch.rand(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor(1), name="g0",
                   weight=0.5, num_nodes=3, mask=torch.tensor([True, False, True]), half=torch.rand(2, 3).half())
    back = open_graphs(write_graphs(tmp_path / "e", [scalars]).root)[0]
    assert _same_graph(back, scalars)


def test_corrupt_rows_are_named(ba3_small, tmp_path):
    root = tmp_path / "g"
    write_graphs(root, [ba3_small[i] for i in range(4)]).close()
    with sqlite3.connect(root / "processed" / "sqlite.db") as con:
        con.execute("UPDATE GraphSet SET COL_x = ? WHERE id = 2", (b"\x00" * 7,))
    graphs = open_graphs(root)
    assert _same_graph(graphs[1], ba3_small[1])
    with pytest.raises(ValueError, match="graph 2: attribute 'x' holds 7 bytes, not float32 values of shape"):
        fetch(graphs, [1, 2])
    with sqlite3.connect(root / "processed" / "sqlite.db") as con:
        con.execute("UPDATE GraphSetSchema SET schema = ? WHERE id = 0",
                    ('{"format": 1, "fields": [{"name": "x; DROP TABLE GraphSet", "type": "float32", "size": [-1]}]}',))
    with pytest.raises(ValueError, match="holds no valid graph set schema"):
        open_graphs(root)


def test_fingerprint_is_stable_under_reading(on_disk):
    graphs = open_graphs(on_disk)
    before = graphs.sha256()
    fetch(graphs, list(range(0, 60, 3)))
    graphs[5]
    graphs.close()
    assert open_graphs(on_disk).sha256() == before


def test_balance_chunks_deals_the_largest_first_to_the_least_loaded_rank():
    chunks = [(0, 4), (4, 8), (8, 12), (12, 16)]
    loads = [10, 40, 20, 30]
    shares = [balance_chunks(chunks, loads, rank, 2) for rank in range(2)]
    assert shares == [[(0, 4), (4, 8)], [(8, 12), (12, 16)]]  # 40 + 10 and 30 + 20
    assert balance_chunks(chunks, loads, 0, 1) == chunks
