"""The refine-fast command end to end on a small run: train-gnn → pretrain → explain → evaluate."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

from refine_fast import cli
from refine_fast.store import load_explanations


def run(capsys, *argv):
    """``refine-fast ARGV --json`` in this process; returns the parsed JSON result."""
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in argv] + ["--json", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads(capsys.readouterr().out)


def test_train_pretrain_explain_evaluate(tmp_path, capsys):
    common = ["--dataset", "ba3", "--cache-dir", tmp_path / "cache", "--threads", "1"]
    gnn = run(capsys, "train-gnn", *common, "--out", tmp_path / "gnn", "--epochs", 1)
    model = gnn["model_path"]
    pre = run(capsys, "pretrain", *common, "--model", model, "--out", tmp_path / "refine.pt", "--epochs", 1)
    assert len(pre["history"]["loss"]) == 1 and (tmp_path / "refine.pt").is_file()

    out = tmp_path / "expl"
    first = run(capsys, "explain", *common, "--model", model, "--explainer", tmp_path / "refine.pt", "--out", out,
                "--steps", 2, "--chunk-size", 150)
    assert first["graphs_total"] == 400 and first["graphs_explained_now"] == 400
    ids, imps, meta = load_explanations(out)
    assert meta["steps"] == 2 and len(imps) == 400
    assert all(torch.isfinite(t).all() and ((t >= 0) & (t <= 1)).all() for t in imps)
    # Run again: everything is done, nothing is recomputed, the result is unchanged.
    again = run(capsys, "explain", *common, "--model", model, "--explainer", tmp_path / "refine.pt", "--out", out,
                "--steps", 2, "--chunk-size", 150)
    assert again["graphs_explained_now"] == 0
    ids2, imps2, _ = load_explanations(out)
    assert torch.equal(ids, ids2) and all(torch.equal(a, b) for a, b in zip(imps, imps2))

    ev = run(capsys, "evaluate", *common, "--model", model, "--explanations", out, "--out", tmp_path / "eval")
    metrics = ev["explanations"]
    assert 0.0 <= metrics["acc_auc"] <= 1.0 and metrics["num_correct"] <= metrics["num_graphs"] == 400
    assert metrics["recall@5"] <= metrics["recall@5_ceiling"] + 1e-9
    assert (tmp_path / "eval" / "acc_curve.png").stat().st_size > 0

    both = run(capsys, "evaluate", *common, "--model", model, "--explainer", tmp_path / "refine.pt", "--steps", 1)
    assert set(both) == {"refine_ft", "refine"} and len(both["refine"]["acc"]) == 10


def fails(capsys, argv, message):
    """``refine-fast ARGV`` exits with code 2 and one line on stderr matching ``message``."""
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in argv]) == 2
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refine-fast {argv[0]}: error: "), err
    assert re.search(message, lines[0]), lines[0]


def test_bad_arguments_are_named(tmp_path, capsys):
    fails(capsys, ["train-gnn", "--dataset", "mutag", "--out", tmp_path], "--data-root is required")
    (tmp_path / "m.pt").write_bytes(b"")
    fails(capsys, ["evaluate", "--dataset", "ba3", "--model", tmp_path / "m.pt"], "exactly one of --explanations")
    fails(capsys, ["evaluate", "--model", tmp_path / "m.pt", "--explainer", tmp_path / "m.pt"],
          "--explainer needs --dataset")
    fails(capsys, ["evaluate", "--table", "--dataset", "ba3,vg", "--out", tmp_path],
          "argument --dataset: expected one of ba3, mutag, mnist")


def test_table_runs_at_one_thread_unless_told(tmp_path, capsys, monkeypatch):
    from refine_fast import tables

    seen = []
    monkeypatch.setattr(tables, "run_tables", lambda *a, **k: seen.append(k["threads"]) or {})
    run(capsys, "evaluate", "--table", "--dataset", "ba3", "--out", tmp_path)
    run(capsys, "evaluate", "--table", "--dataset", "ba3", "--out", tmp_path, "--threads", 2)
    assert seen == [1, 2]


@pytest.fixture
def model_and_explainer(tmp_path, ba3_model):
    """A seeded untrained target GNN and ReFine written as the CLI reads them."""
    from refine_fast.explain import ReFine
    from refine_fast.models import save_model

    refine = ReFine(ba3_model, 3, 4, hidden=12, batch_size=16, seed=3)
    refine.save(tmp_path / "refine.pt")
    return save_model(ba3_model, tmp_path / "model.pt"), tmp_path / "refine.pt", refine


def test_explain_graphs_on_disk(tmp_path, capsys, ba3_small, model_and_explainer):
    from refine_fast.datasets import write_graphs

    model, explainer, refine = model_and_explainer
    write_graphs(tmp_path / "graphs", (ba3_small[i] for i in range(len(ba3_small)))).close()
    common = ["--graphs", tmp_path / "graphs", "--model", model, "--explainer", explainer, "--threads", 1,
              "--steps", 2, "--chunk-size", 16]
    res = run(capsys, "explain", *common, "--out", tmp_path / "all")
    assert res["graphs_total"] == res["graphs_explained_now"] == 60
    ids, imps, meta = load_explanations(res["explanations"])
    assert ids.tolist() == list(range(60)) and meta["id_range"] == [0, 60]
    for s in range(0, 60, 16):  # ReFine.explain in memory, chunk by chunk, one worker as --threads 1
        expected = refine.explain([ba3_small[i] for i in range(s, min(s + 16, 60))], steps=2,
                                  graph_ids=list(range(s, min(s + 16, 60))), progress=False, workers=1)
        assert all(torch.equal(a, b) for a, b in zip(imps[s:s + 16], expected))

    # evaluate finds the graph set through the run's manifest; same metrics as with the graphs in memory
    ev = run(capsys, "evaluate", "--model", model, "--explanations", tmp_path / "all", "--threads", 1)["explanations"]
    from refine_fast.metrics import EvalGraphs, acc_auc, correct_subset
    from refine_fast.models import load_model
    target = load_model(model)
    index, _ = correct_subset(target, [ba3_small[i] for i in range(60)])
    expected_auc = acc_auc(target, EvalGraphs.of([ba3_small[int(i)] for i in index]), [imps[int(i)] for i in index])
    assert ev["acc_auc"] == pytest.approx(expected_auc["acc_auc"]) and ev["num_graphs"] == 60
    fails(capsys, ["evaluate", "--model", model, "--explanations", tmp_path / "all", "--graphs", tmp_path / "missing"],
          "--graphs .*missing")

    top = run(capsys, "explain", *common, "--id-range", "0:16", "--select", "top", "--out", tmp_path / "top")
    _, imps_top, meta_top = load_explanations(top["explanations"])
    expected = refine.explain([ba3_small[i] for i in range(16)], steps=2, graph_ids=list(range(16)), progress=False,
                              workers=1, select="top")
    assert meta_top["select"] == "top" and all(torch.equal(a, b) for a, b in zip(imps_top, expected))

    part = run(capsys, "explain", *common, "--id-range", "20:50", "--no-merge", "--out", tmp_path / "part")
    assert part["graphs_total"] == 30 and part["explanations"] == str(tmp_path / "part")
    assert not (tmp_path / "part" / "explanations.pt").exists()
    ids2, imps2, _ = load_explanations(tmp_path / "part")  # read from the chunks
    assert ids2.tolist() == list(range(20, 50)) and all(t.numel() == ba3_small[20 + k].num_edges
                                                         for k, t in enumerate(imps2))
    fails(capsys, ["explain", *common, "--id-range", "50:70", "--out", tmp_path / "bad"],
          "--id-range 50:70 is outside the 60 graphs of --graphs")
    for bad in ("7", "a:b", "5:2", "-1:3"):
        fails(capsys, ["explain", *common, f"--id-range={bad}", "--out", tmp_path / "bad"],
              f"argument --id-range: expected .*got '{bad}'")
    assert not (tmp_path / "bad").exists()


def test_explain_source_errors_are_named(tmp_path, capsys, model_and_explainer):
    model, explainer, _ = model_and_explainer
    base = ["explain", "--model", model, "--explainer", explainer, "--out", tmp_path / "o"]
    (tmp_path / "empty").mkdir()
    cases = [([], "exactly one of --dataset NAME or --graphs DIR"),
             (["--dataset", "ba3", "--graphs", tmp_path], "exactly one of --dataset NAME or --graphs DIR"),
             (["--graphs", tmp_path / "missing"], "--graphs .*missing: .*not a directory"),
             (["--graphs", tmp_path / "empty"], "--graphs .*empty: .*not a graph set folder"),
             (["--graphs", tmp_path / "empty", "--split", "test"], "--split applies only to --dataset"),
             (["--dataset", "ba3", "--id-range", "0:5"], "--id-range applies only to --graphs")]
    for extra, message in cases:
        fails(capsys, base + extra, message)


@pytest.fixture
def graph_set(tmp_path, ba3_small):
    from refine_fast.datasets import write_graphs

    write_graphs(tmp_path / "graphs", (ba3_small[i] for i in range(len(ba3_small)))).close()
    return tmp_path / "graphs"


def _explain(graph_set, model, explainer, out, *extra):
    return ["explain", "--graphs", graph_set, "--model", model, "--explainer", explainer, "--out", out,
            "--threads", 1, "--steps", 1, "--chunk-size", 16, *extra]


def test_manifest_holds_contents_and_settings_and_refuses_any_difference(tmp_path, capsys, graph_set,
                                                                         model_and_explainer, ba3_model):
    from refine_fast.datasets import open_graphs
    from refine_fast.explain import ReFine
    from refine_fast.fileio import file_sha256

    model, explainer, _ = model_and_explainer
    out = tmp_path / "out"
    assert run(capsys, *_explain(graph_set, model, explainer, out))["graphs_explained_now"] == 60
    meta = json.loads((out / "manifest.json").read_text())["meta"]
    assert meta == {"graphs": str(graph_set.resolve()), "graphs_sha256": open_graphs(graph_set).sha256(),
                    "id_range": [0, 60], "ratio": 0.4, "steps": 1, "lr": meta["lr"], "batch_size": 16,
                    "select": "sample", "seed": 0, "threads": 1, "model": str(model.resolve()),
                    "model_sha256": file_sha256(model), "explainer": str(explainer.resolve()),
                    "explainer_sha256": file_sha256(explainer)}
    first = load_explanations(out)
    (out / "chunks" / "chunk_0000000016_0000000032.pt").unlink()  # as if killed before that chunk
    (out / "explanations.pt").unlink()
    good = explainer.read_bytes()
    ReFine(ba3_model, 3, 4, hidden=12, batch_size=16, seed=4).save(explainer)  # retrained to the same path
    fails(capsys, _explain(graph_set, model, explainer, out), "other settings: explainer_sha256 [0-9a-f]{12}… there, "
                                                              "[0-9a-f]{12}… now; pass .*--overwrite")
    explainer.write_bytes(good)
    for extra, difference in [(["--batch-size", 8], "batch_size 16 there, 8 now"),
                              (["--threads", 2], "threads 1 there, 2 now"),
                              (["--seed", 3], "seed 0 there, 3 now"),
                              (["--select", "top"], 'select "sample" there, "top" now'),
                              (["--ratio", 0.5], "ratio 0.4 there, 0.5 now"),
                              (["--steps", 2], "steps 1 there, 2 now"),
                              (["--lr", 0.5], "lr .* there, 0.5 now"),
                              (["--id-range", "0:50"], "num_graphs 60 there, 50 now; id_range \\[0, 60\\] there, "
                                                       "\\[0, 50\\] now")]:
        argv = _explain(graph_set, model, explainer, out, *extra)
        if "--threads" in extra:
            argv = argv[:argv.index("--threads")] + argv[argv.index("--threads") + 2:]
        fails(capsys, argv, difference)
    # Files of the same content elsewhere resume the run: only the missing chunk is computed.
    (tmp_path / "moved.pt").write_bytes(model.read_bytes())
    again = run(capsys, *_explain(graph_set, tmp_path / "moved.pt", explainer, out))
    assert again["graphs_explained_now"] == 16
    second = load_explanations(out)
    assert torch.equal(first[0], second[0]) and all(map(torch.equal, first[1], second[1]))
    assert json.loads((out / "manifest.json").read_text())["meta"]["model"] == str((tmp_path / "moved.pt").resolve())
    redo = run(capsys, *_explain(graph_set, model, explainer, out, "--batch-size", 8, "--overwrite"))
    assert redo["graphs_explained_now"] == 60


def test_explainer_of_another_model_is_refused_and_a_failed_run_writes_nothing(tmp_path, capsys, graph_set,
                                                                               model_and_explainer):
    from refine_fast.models import BA3MotifNet, save_model

    model, explainer, _ = model_and_explainer
    torch.manual_seed(5)
    other = save_model(BA3MotifNet().eval(), tmp_path / "other.pt")
    out = tmp_path / "out"
    fails(capsys, _explain(graph_set, other, explainer, out),
          "--explainer: ReFine.load: .*refine.pt was pre-trained for another model .*--allow-other-model")
    assert not out.exists()  # no manifest that would refuse the corrected command
    assert run(capsys, *_explain(graph_set, model, explainer, out))["graphs_explained_now"] == 60
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in _explain(graph_set, other, explainer, tmp_path / "forced",
                                                  "--allow-other-model", "--no-progress")]) == 0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.match("refine-fast explain: warning: ReFine.load: .*pre-trained for another model", err[0])
    fails(capsys, ["evaluate", "--dataset", "ba3", "--model", other, "--explainer", explainer],
          "--explainer: .*pre-trained for another model")
    torch.manual_seed(6)
    wide = save_model(BA3MotifNet(in_channels=5).eval(), tmp_path / "wide.pt")
    fails(capsys, _explain(graph_set, wide, explainer, tmp_path / "wide_out", "--allow-other-model"),
          "--model: a BA3MotifNet for 5 node features, but the graphs of --graphs .* have 4")
    assert not (tmp_path / "wide_out").exists()


def _flip_a_value(path):
    data = bytearray(path.read_bytes())
    part = torch.load(path, weights_only=True)
    at = bytes(data).index(part["importance"][:2].numpy().tobytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_corrupt_chunk_is_named_and_recomputed(tmp_path, capsys, graph_set, model_and_explainer):
    model, explainer, _ = model_and_explainer
    out = tmp_path / "out"
    run(capsys, *_explain(graph_set, model, explainer, out))
    first = load_explanations(out)
    chunk = out / "chunks" / "chunk_0000000032_0000000048.pt"
    _flip_a_value(chunk)
    (out / "explanations.pt").unlink()
    fails(capsys, ["evaluate", "--model", model, "--explanations", out], f"--explanations: .*chunk {chunk} is unusable "
                                                                         "\\(corrupt: its checksum does not match")
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in _explain(graph_set, model, explainer, out, "--json", "--no-progress")]) == 0
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["graphs_explained_now"] == 16
    assert re.fullmatch(f"refine-fast explain: warning: ExplanationStore: chunk {chunk} is unusable .*moved to "
                        f"{chunk.name}.corrupt, it will be recomputed", captured.err.splitlines()[0])
    assert captured.err.splitlines()[1].startswith("explained 16 graphs now")  # --json: the summary goes to stderr
    second = load_explanations(out)
    assert torch.equal(first[0], second[0]) and all(map(torch.equal, first[1], second[1]))


def test_full_disk_is_one_line_naming_the_path(tmp_path, capsys, graph_set, model_and_explainer):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    model, explainer, _ = model_and_explainer
    out = tmp_path / "out"
    run(capsys, *_explain(graph_set, model, explainer, out))
    chunk = out / "chunks" / "chunk_0000000000_0000000016.pt"
    chunk.unlink()  # a resumed run whose first write finds the disk full (the temporary file -> /dev/full)
    tmp = chunk.with_name(f".{chunk.name}.tmp{os.getpid()}")
    tmp.symlink_to("/dev/full")
    fails(capsys, _explain(graph_set, model, explainer, out, "--no-progress"),
          f"no space left on the device to write {chunk}")
    assert not tmp.is_symlink() and not chunk.exists() and len(list((out / "chunks").iterdir())) == 3
    assert run(capsys, *_explain(graph_set, model, explainer, out))["graphs_explained_now"] == 16  # resumes


def test_evaluate_opens_only_the_recorded_schema_typed_graph_set(tmp_path, capsys, graph_set, ba3_small,
                                                                model_and_explainer):
    import shutil

    from torch_geometric.data import OnDiskDataset

    from refine_fast.datasets import write_graphs

    model, explainer, _ = model_and_explainer
    out = tmp_path / "out"
    run(capsys, *_explain(graph_set, model, explainer, out))
    base = run(capsys, "evaluate", "--model", model, "--explanations", out)["explanations"]
    write_graphs(tmp_path / "copy", (ba3_small[i] for i in range(60))).close()  # the same content elsewhere
    assert run(capsys, "evaluate", "--model", model, "--explanations", out,
               "--graphs", tmp_path / "copy")["explanations"]["acc_auc"] == base["acc_auc"]
    write_graphs(tmp_path / "other", (ba3_small[59 - i] for i in range(60))).close()
    fails(capsys, ["evaluate", "--model", model, "--explanations", out, "--graphs", tmp_path / "other"],
          "--graphs .*other: not the graphs the explanations were made from")
    shutil.rmtree(graph_set)  # the recorded path now holds a pickled set
    pickled = OnDiskDataset(str(graph_set), log=False)
    pickled.extend([ba3_small[i] for i in range(60)])
    pickled.close()
    fails(capsys, ["evaluate", "--model", model, "--explanations", out], "--graphs .*graphs: .*stores pickled rows")


def test_progress_on_stderr_only(tmp_path, capsys, graph_set, model_and_explainer, ba3_cache, ba3_full):
    model, explainer, _ = model_and_explainer
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in _explain(graph_set, model, explainer, tmp_path / "o", "--json")]) == 0
        shown = capsys.readouterr()
        assert json.loads(shown.out)["graphs_explained_now"] == 60  # stdout is the JSON alone
        assert re.search(r"explain: 100%.*60/60.*graph/s", shown.err)
        assert cli.main([str(a) for a in _explain(graph_set, model, explainer, tmp_path / "q", "--json",
                                                  "--no-progress")]) == 0
        assert capsys.readouterr().err.startswith("explained 60 graphs now")  # the summary line alone
        common = ["--dataset", "ba3", "--cache-dir", ba3_cache, "--threads", 1, "--json"]
        assert cli.main([str(a) for a in ["pretrain", *common, "--model", model, "--out", tmp_path / "e.pt",
                                          "--epochs", 2, "--hidden", 8]]) == 0
        err = capsys.readouterr().err
        assert "pretrain epoch 1/2" in err and re.search(r"pretrain epoch 2/2.*loss=-?\d", err)
        assert cli.main([str(a) for a in ["evaluate", *common, "--model", model, "--explainer", tmp_path / "e.pt",
                                          "--steps", 1]]) == 0
        err = capsys.readouterr().err
        assert "ReFine-FT" in err and all(f"ReFine ρ={r / 10:g}" in err for r in range(1, 11))
    finally:
        torch.set_num_threads(threads)
