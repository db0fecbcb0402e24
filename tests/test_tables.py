"""run_tables writes the three tables and the JSON, and resumes from its per-result files."""
import json

import pytest
import torch

from refine_fast.tables import render
from refine_fast.tables import run as runner
from refine_fast.baselines import EXPLAINERS, has_pgmpy
from refine_fast.explain import ReFineConfig

from test_baselines import TinyGNN, one_thread, tiny_graphs  # noqa: F401  (autouse fixture)


@pytest.fixture()
def bundle():
    torch.manual_seed(0)
    model = TinyGNN().eval()
    graphs = tiny_graphs(18)
    for g in graphs:  # label each graph with the model's prediction, so every test graph counts
        g.y = model(g.x, g.edge_index, g.edge_attr).argmax(-1)
    config = ReFineConfig(hidden=8, epochs=1, batch_size=8, fine_tune_steps=2, ratio=0.4)
    return runner.Bundle("tiny", model, graphs[:10], graphs[10:12], graphs[12:], config, recall_n=3)


def test_run_tables_quick_writes_tables_and_resumes(bundle, tmp_path, monkeypatch):
    report = runner.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle},
                              gnnexplainer_epochs=5, pgexplainer_epochs=2)
    for name in ("table2.md", "table3.md", "table4.md", "tables.json"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "tables.json").read_text())
    entry = saved["datasets"]["tiny"]
    run = {n for n in EXPLAINERS if n != "PGM-Explainer" or has_pgmpy()}  # PGM-Explainer needs the pgm extra
    assert entry["evaluated"] == 6 and set(entry["summary"]) == run
    for name, s in entry["summary"].items():
        assert 0.0 <= s["acc_auc"]["mean"] <= 1.0, name
        assert s["seconds_per_graph"]["mean"] > 0, name
        assert set(s["acc"]) == {str(r) for r in runner.RATIOS}
    table2 = (tmp_path / "table2.md").read_text()
    assert "PGM-Explainer" in table2 and ("not run" in table2) != has_pgmpy() and "Recall@3" in table2
    assert "ReFine-FT" in (tmp_path / "table3.md").read_text()
    assert "threads" in (tmp_path / "table4.md").read_text()
    timing = entry["timing"]
    assert set(timing["seconds_per_graph"]) == run
    assert set(timing["one_at_a_time"]) == {"PGExplainer", "ReFine"}
    assert all(t > 0 for t in list(timing["seconds_per_graph"].values()) + list(timing["one_at_a_time"].values()))
    # as JSON: a metric without graphs to average (e.g. auroc_needed) is NaN, and NaN != NaN
    assert json.dumps(report["datasets"]["tiny"]["summary"]) == json.dumps(entry["summary"])

    # resume: every (dataset, explainer, seed) is cached, nothing is explained again
    monkeypatch.setattr(runner, "evaluate_explainer", lambda *a, **k: pytest.fail("recomputed a cached result"))
    monkeypatch.setattr(runner, "_fit", lambda *a, **k: pytest.fail("re-timed a cached timing pass"))
    again = runner.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle},
                              gnnexplainer_epochs=5, pgexplainer_epochs=2)
    assert json.dumps(again["datasets"]["tiny"]["summary"]) == json.dumps(entry["summary"])
    assert again["datasets"]["tiny"]["timing"] == timing

    # another model (same path/name) must not reuse the cached results
    with torch.no_grad():
        bundle.model.lin.bias.add_(1e-3)
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        runner.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle},
                          gnnexplainer_epochs=5, pgexplainer_epochs=2)


def test_render_only_uses_finished_results(bundle, tmp_path, monkeypatch):
    runner.run_tables("tiny", "", str(tmp_path), seeds=2, progress=False, bundles={"tiny": bundle},
                      explainers=["Random", "SA"], max_graphs=6)
    (tmp_path / "results" / "tiny" / "SA_seed1.json").unlink()
    monkeypatch.setattr(runner, "evaluate_explainer", lambda *a, **k: pytest.fail("computed in render-only mode"))
    report = runner.run_tables("tiny", "", str(tmp_path), seeds=2, progress=False, bundles={"tiny": bundle},
                               explainers=["Random", "SA", "GNNExplainer"], max_graphs=6, compute=False)
    summary = report["datasets"]["tiny"]["summary"]
    assert summary["Random"]["acc_auc"]["n"] == 2 and summary["SA"]["acc_auc"]["n"] == 1
    assert "GNNExplainer" not in summary and report["settings"]["complete"] is False
    table2 = (tmp_path / "table2.md").read_text()
    assert "**Partial**" in table2 and "(1 of 2 seeds)" in table2


def test_quick_trains_on_a_spread_of_the_training_graphs(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "QUICK_TRAIN_GRAPHS", 4)
    train = list(bundle.train)
    report = runner.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle},
                               explainers=["Random"])
    assert report["datasets"]["tiny"]["train_graphs"] == 4 and bundle.train == train[::3]


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        runner.run_tables("vg", "", str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="dataset must be one of"):
        runner.run_tables("ba3,vg", "", str(tmp_path), progress=False)


def test_dataset_list(bundle, tmp_path):
    report = runner.run_tables("tiny,again", "", str(tmp_path), quick=True, progress=False,
                               bundles={"tiny": bundle, "again": bundle}, explainers=["Random", "SA"])
    assert list(report["datasets"]) == ["tiny", "again"]
    auc = {d: {n: v["acc_auc"] for n, v in e["summary"].items()} for d, e in report["datasets"].items()}
    assert auc["tiny"] == auc["again"] and set(auc["tiny"]) == {"Random", "SA"}
    assert "| Random |" in (tmp_path / "table2.md").read_text()


def _result(auc, seconds=0.01, gt=True):
    r = {"acc": {str(x): auc for x in runner.RATIOS}, "acc_auc": auc, "num_graphs": 10,
         "seconds_per_graph": seconds, "graphs_per_second": 1 / seconds, "fit_seconds": 1.0}
    if gt:
        r.update(auroc=0.5, auroc_pooled=0.5, recall=0.2, recall_ceiling=0.3, recall_graphs=10)
    return r


def test_render_tables_mean_std_and_checks():
    runs = {"SA": [_result(0.5), _result(0.7)], "PGExplainer": [_result(0.6), _result(0.6)],
            "ReFine-FT": [_result(0.55), _result(0.55)], "ReFine": [_result(0.65, 0.02), _result(0.65, 0.02)]}
    entry = {"title": "Toy", "test_graphs": 12, "correct": 10, "evaluated": 10, "recall_n": 5,
             "refine_config": {"fine_tune_steps": 20}, "runs": runs, "summary": runner._summarize(runs),
             "timing": {"load_average": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], "one_at_a_time": {"PGExplainer": 0.004},
                        "seconds_per_graph": {"SA": 0.01, "PGExplainer": 0.01, "ReFine-FT": 0.01, "ReFine": 0.02}}}
    report = {"settings": {"seeds": 2, "quick": False}, "machine": runner.machine_info(),
              "datasets": {"toy": entry}, "not_run": {"PGM-Explainer": "not run: pgmpy is not installed"}}
    out = render.render_tables(report)
    rows = [line.split(" | ")[0] for line in out["table2.md"].splitlines() if line.startswith("| ")]
    assert rows[1:] == ["| SA", "| PGExplainer", "| PGM-Explainer", "| ReFine-FT", "| ReFine"]
    assert "| PGM-Explainer | not run¹ |" in out["table2.md"]
    assert "¹ PGM-Explainer: not run: pgmpy" in out["table2.md"]
    assert "| PGM-Explainer |" not in out["table4.md"]
    assert "| SA | 0.600 ± 0.100 |" in out["table2.md"]
    assert "Toy: ReFine beats every baseline" in out["table2.md"]  # 0.65 > every mean
    assert "ReFine ≥ ReFine-FT ≥ PGExplainer fails: ReFine-FT < PGExplainer" in out["table2.md"]
    assert "| Toy | 20 | 50.0 | – | 2.0× | 5.0× |" in out["table4.md"]
    assert "need their ground truth" not in out["table2.md"]  # no such results: no column, no check


@pytest.mark.parametrize("refine, ct, verdict", [(0.9, 0.8, "holds"), (0.7, 0.8, "fails")])
def test_render_tables_auroc_needed_column_and_check(refine, ct, verdict):
    def result(auc, needed):
        return {**_result(auc), "auroc_needed": needed, "graphs_needed": 7}
    runs = {"SA": [_result(0.5)], "ReFine-CT": [result(0.6, ct)], "ReFine": [result(0.65, refine)]}
    entry = {"title": "Toy", "test_graphs": 12, "correct": 10, "evaluated": 10, "recall_n": 5,
             "refine_config": {"fine_tune_steps": 20}, "runs": runs, "summary": runner._summarize(runs), "timing": {}}
    report = {"settings": {"seeds": 1, "quick": False}, "machine": runner.machine_info(), "datasets": {"toy": entry}}
    table2 = render.render_tables(report)["table2.md"]
    header = next(line for line in table2.splitlines() if line.startswith("| Explainer"))
    assert header.endswith("Toy edge AUROC, graphs that need their ground truth² |")
    assert f"| ReFine | 0.650 | 0.200 | 0.500 | {refine:.3f} |" in table2
    assert "| SA | 0.500 | 0.200 | 0.500 | – |" in table2
    assert "needs_ground_truth`): Toy 7 graphs" in table2
    assert f"ground truth: ReFine ≥ ReFine-CT {verdict}" in table2
    del runs["SA"]  # a run without baselines claims nothing about them
    entry["summary"] = runner._summarize(runs)
    assert "Toy: ReFine has no baseline to beat here" in render.render_tables(report)["table2.md"]
