"""The refine-fast command end to end on a small run: train-gnn → pretrain → explain → evaluate."""
import json

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


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--data-root is required"):
        cli.main(["train-gnn", "--dataset", "mutag", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="exactly one of --explanations"):
        cli.main(["evaluate", "--dataset", "ba3", "--model", str(tmp_path / "m.pt")])
