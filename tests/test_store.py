import pytest
import torch

from refine_fast.store import ExplanationStore, load_explanations, pack, unpack


def _importances(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(int(torch.randint(0, 7, (1,), generator=g)), generator=g) for _ in range(n)]


def test_pack_unpack_roundtrip_with_empty_graphs():
    imps = _importances(9)
    imps[3] = torch.zeros(0)
    flat, ptr = pack(imps)
    assert ptr.tolist()[-1] == flat.numel()
    back = unpack(flat, ptr)
    assert len(back) == 9 and all(torch.equal(a, b) for a, b in zip(imps, back))
    assert unpack(*pack([])) == []


def test_store_resumes_without_redoing_or_losing_chunks(tmp_path):
    imps = _importances(10)
    meta = {"seed": 0, "ratio": 0.4}
    store = ExplanationStore(tmp_path, 10, 4, meta)
    assert store.chunks() == [(0, 4), (4, 8), (8, 10)]
    store.write(0, 4, imps[0:4])
    # A "killed" run: reopen and only the unfinished chunks are pending.
    store = ExplanationStore(tmp_path, 10, 4, meta)
    assert list(store.pending()) == [(4, 8), (8, 10)]
    with pytest.raises(RuntimeError, match="not finished"):
        store.merge()
    for s, e in store.pending():
        store.write(s, e, imps[s:e])
    ids, back, got_meta = load_explanations(store.merge())
    assert ids.tolist() == list(range(10)) and got_meta == meta
    assert all(torch.equal(a, b) for a, b in zip(imps, back))
    # The merged file loads with weights_only=True.
    torch.load(tmp_path / "explanations.pt", weights_only=True)


def test_store_refuses_to_mix_runs(tmp_path):
    ExplanationStore(tmp_path, 10, 4, {"seed": 0})
    with pytest.raises(ValueError, match="other settings"):
        ExplanationStore(tmp_path, 10, 4, {"seed": 1})
    store = ExplanationStore(tmp_path, 10, 4, {"seed": 1}, overwrite=True)
    assert len(list(store.pending())) == 3
    with pytest.raises(ValueError, match="expected 4 importances"):
        store.write(0, 4, _importances(3))


def test_open_read_and_unmerged_directories(tmp_path):
    imps = _importances(7)
    store = ExplanationStore(tmp_path / "a", 7, 3, {"seed": 2})
    for s, e in store.chunks():
        store.write(s, e, imps[s:e], graph_ids=torch.arange(s, e) + 100)
    again = ExplanationStore.open(tmp_path / "a")
    assert again.manifest == store.manifest and list(again.pending()) == []
    ids, part = again.read(3, 6)
    assert ids.tolist() == [103, 104, 105] and all(torch.equal(a, b) for a, b in zip(part, imps[3:6]))
    # Without explanations.pt the chunks are read; with it, the merged file (the same result).
    for ids, back, meta in (load_explanations(tmp_path / "a"), load_explanations(store.merge())):
        assert ids.tolist() == list(range(100, 107)) and meta == {"seed": 2}
        assert all(torch.equal(a, b) for a, b in zip(back, imps))
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        ExplanationStore.open(tmp_path / "b")
    empty = ExplanationStore(tmp_path / "c", 0, 3, {})
    assert load_explanations(tmp_path / "c")[1] == [] and load_explanations(empty.merge())[1] == []
