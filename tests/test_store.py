import errno
import json
import os
from pathlib import Path

import pytest
import torch

from refine_fast.fileio import atomic_save
from refine_fast.store import ExplanationStore, concat_importances, load_explanations, split_importances


def _importances(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(int(torch.randint(0, 7, (1,), generator=g)), generator=g) for _ in range(n)]


def test_pack_unpack_roundtrip_with_empty_graphs():
    imps = _importances(9)
    imps[3] = torch.zeros(0)
    flat, ptr = concat_importances(imps)
    assert ptr.tolist()[-1] == flat.numel()
    back = split_importances(flat, ptr)
    assert len(back) == 9 and all(torch.equal(a, b) for a, b in zip(imps, back))
    assert split_importances(*concat_importances([])) == []


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
    # The merged file and every chunk load with weights_only=True and carry their checksum.
    for path in [tmp_path / "explanations.pt", *store.chunk_dir.glob("chunk_*.pt")]:
        assert len(torch.load(path, weights_only=True)["sha256"]) == 64
    assert sorted(p.name for p in store.chunk_dir.iterdir()) == [f"chunk_{s:010d}_{e:010d}.pt" for s, e in
                                                                 store.chunks()]  # no temporary files left


def test_store_refuses_to_mix_runs_and_names_the_difference(tmp_path):
    imps = _importances(10)
    store = ExplanationStore(tmp_path, 10, 4, {"seed": 0, "model_sha256": "a" * 64, "model": "m.pt"},
                             informational=("model",))
    store.write(0, 4, imps[:4])
    with pytest.raises(ValueError, match="other settings: chunk_size 4 there, 5 now; seed 0 there, 1 now;"):
        ExplanationStore(tmp_path, 10, 5, {"seed": 1, "model_sha256": "a" * 64, "model": "m.pt"})
    with pytest.raises(ValueError, match="model_sha256 aaaaaaaaaaaa… there, bbbbbbbbbbbb… now.*--overwrite"):
        ExplanationStore(tmp_path, 10, 4, {"seed": 0, "model_sha256": "b" * 64, "model": "m.pt"},
                         informational=("model",))
    with pytest.raises(ValueError, match="batch_size \\(not recorded\\) there, 8 now"):
        ExplanationStore(tmp_path, 10, 4, {"seed": 0, "model_sha256": "a" * 64, "model": "m.pt", "batch_size": 8},
                         informational=("model",))
    # A path recorded for information only: the same content elsewhere resumes, and the manifest follows.
    moved = ExplanationStore(tmp_path, 10, 4, {"seed": 0, "model_sha256": "a" * 64, "model": "moved.pt"},
                             informational=("model",))
    assert moved.pending() == [(4, 8), (8, 10)]
    assert json.loads((tmp_path / "manifest.json").read_text())["meta"]["model"] == "moved.pt"
    store = ExplanationStore(tmp_path, 10, 4, {"seed": 1}, overwrite=True)
    assert len(store.pending()) == 3
    with pytest.raises(ValueError, match="expected 4 importances"):
        store.write(0, 4, _importances(3))


def test_nothing_is_written_before_the_first_chunk(tmp_path):
    """A run that fails before its first chunk leaves the directory as it was: no manifest that would
    refuse the corrected command, and --overwrite deletes nothing yet."""
    ExplanationStore(tmp_path / "fresh", 10, 4, {"ratio": 0})
    assert not (tmp_path / "fresh").exists()
    ExplanationStore(tmp_path / "fresh", 10, 4, {"ratio": 0.4}).write(0, 4, _importances(4))  # not refused

    old = ExplanationStore(tmp_path / "old", 10, 4, {"seed": 0})
    old.write(0, 4, _importances(4))
    again = ExplanationStore(tmp_path / "old", 10, 4, {"seed": 1}, overwrite=True)
    assert again.pending() == again.chunks() and any((tmp_path / "old" / "chunks").glob("chunk_*.pt"))
    assert ExplanationStore(tmp_path / "old", 10, 4, {"seed": 0}).pending() == [(4, 8), (8, 10)]
    again.write(4, 8, _importances(4))  # now the old run is cleared
    assert ExplanationStore(tmp_path / "old", 10, 4, {"seed": 1}).pending() == [(0, 4), (8, 10)]


def test_sizes_and_writes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="num_graphs must be >= 0, got -3"):
        ExplanationStore(tmp_path, -3, 4, {})
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        ExplanationStore(tmp_path, 10, 0, {})
    with pytest.raises(TypeError, match="chunk_size must be an int, got 2.5"):
        ExplanationStore(tmp_path, 10, 2.5, {})
    store = ExplanationStore(tmp_path, 10, 4, {})
    for start, stop in ((1, 5), (0, 3), (8, 12), (-4, 0)):
        with pytest.raises(ValueError, match=f"\\({start}, {stop}\\) is not a chunk of this store"):
            store.write(start, stop, _importances(stop - start))
    with pytest.raises(ValueError, match="graph_ids must have shape \\[4\\]"):
        store.write(0, 4, _importances(4), graph_ids=torch.arange(3))


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "flipped":  # a byte of the stored importances, past the zip headers: still loads
        part = torch.load(path, weights_only=True)
        needle = part["importance"][:2].numpy().tobytes()
        at = data.index(needle)
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    elif how == "garbage":
        path.write_bytes(b"not a torch file" * 20)


@pytest.mark.parametrize("how", ["empty", "truncated", "flipped", "garbage"])
def test_corrupt_chunks_are_named_set_aside_and_recomputed(tmp_path, how):
    imps = [torch.rand(5) for _ in range(10)]
    store = ExplanationStore(tmp_path, 10, 4, {"seed": 0})
    for s, e in store.chunks():
        store.write(s, e, imps[s:e])
    path = store.chunk_dir / "chunk_0000000004_0000000008.pt"
    _corrupt(path, how)
    # Reading never moves files: it refuses and names the chunk.
    with pytest.raises(ValueError, match=f"chunk {path} is unusable"):
        load_explanations(tmp_path)
    with pytest.raises(ValueError, match=f"chunk {path} is unusable"):
        ExplanationStore.open(tmp_path).merge()
    resumed = ExplanationStore(tmp_path, 10, 4, {"seed": 0})
    with pytest.warns(UserWarning, match=f"chunk {path} is unusable .*moved to {path.name}.corrupt"):
        assert resumed.pending() == [(4, 8)]
    assert not path.exists() and path.with_name(path.name + ".corrupt").exists()
    resumed.write(4, 8, imps[4:8])
    ids, back, _ = load_explanations(resumed.merge())
    assert ids.tolist() == list(range(10)) and all(torch.equal(a, b) for a, b in zip(back, imps))


@pytest.mark.parametrize("how", ["empty", "truncated", "flipped"])
def test_corrupt_merged_file_is_named(tmp_path, how):
    store = ExplanationStore(tmp_path, 3, 4, {"seed": 0})
    store.write(0, 3, [torch.rand(6) for _ in range(3)])
    merged = store.merge()
    assert torch.load(merged, weights_only=True)["sha256"]
    _corrupt(merged, how)
    with pytest.raises(ValueError, match=f"{merged} is"):
        load_explanations(tmp_path)


def test_files_of_the_previous_format_are_read_but_never_resumed(tmp_path):
    """Format 1 (no format key, no checksums): load_explanations still reads it; resuming is refused."""
    imps = _importances(5)
    (tmp_path / "chunks").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"num_graphs": 5, "chunk_size": 3, "meta": {"seed": 0}}))
    for s, e in ((0, 3), (3, 5)):
        flat, ptr = concat_importances(imps[s:e])
        torch.save({"graph_ids": torch.arange(s, e), "ptr": ptr, "importance": flat},
                   tmp_path / "chunks" / f"chunk_{s:010d}_{e:010d}.pt")
    ids, back, meta = load_explanations(tmp_path)
    assert ids.tolist() == [0, 1, 2, 3, 4] and meta == {"seed": 0} and all(map(torch.equal, back, imps))
    with pytest.raises(ValueError, match="another version of refine_fast \\(store format 1"):
        ExplanationStore(tmp_path, 5, 3, {"seed": 0})
    flat, ptr = concat_importances(imps)
    torch.save({"graph_ids": torch.arange(5), "ptr": ptr, "importance": flat, "meta": {"seed": 0}},
               tmp_path / "explanations.pt")
    assert all(map(torch.equal, load_explanations(tmp_path)[1], imps))


def test_full_disk_names_the_path_and_leaves_no_temporary_file(tmp_path):
    """A write that hits ENOSPC (the temporary file is linked to /dev/full) says so with the path; the
    temporary file is removed and nothing is marked done."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    store = ExplanationStore(tmp_path, 4, 4, {"seed": 0})
    store.start()
    target = store.chunk_dir / "chunk_0000000000_0000000004.pt"
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.symlink_to("/dev/full")
    with pytest.raises(OSError, match=f"no space left on the device to write {target}") as error:
        store.write(0, 4, _importances(4))
    assert error.value.errno == errno.ENOSPC
    assert not tmp.exists() and not tmp.is_symlink() and not target.exists()
    assert store.pending() == [(0, 4)]


def test_failed_write_removes_its_temporary_file(tmp_path):
    with pytest.raises(Exception):
        atomic_save({"not picklable": lambda: 0}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


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
    assert load_explanations(empty.merge())[1] == [] and load_explanations(tmp_path / "c")[1] == []
