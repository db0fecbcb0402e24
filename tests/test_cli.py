"""The refine-fast command end to end on a small run: train-gnn → pretrain → explain → evaluate."""
import json
import re

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
    cache, common = tmp_path / "cache", ["--dataset", "ba3", "--cache-dir", tmp_path / "cache", "--threads", "1"]
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
