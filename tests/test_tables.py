"""run_tables writes the three tables and the JSON, and resumes from its per-result files."""
import json

import pytest
import torch

from refine_fast import tables
from refine_fast.baselines import EXPLAINERS
from refine_fast.explain import ReFineConfig

from test_baselines import TinyGNN, tiny_graphs


@pytest.fixture()
def bundle():
    torch.manual_seed(0)
    model = TinyGNN().eval()
    graphs = tiny_graphs(18)
    for g in graphs:  # label each graph with the model's prediction, so every test graph counts
        g.y = model(g.x, g.edge_index, g.edge_attr).argmax(-1)
    config = ReFineConfig(hidden=8, epochs=1, batch_size=8, fine_tune_steps=2, ratio=0.4)
    return tables.Bundle("tiny", model, graphs[:10], graphs[10:12], graphs[12:], config, recall_n=3)


def test_run_tables_quick_writes_tables_and_resumes(bundle, tmp_path, monkeypatch):
    report = tables.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle})
    for name in ("table2.md", "table3.md", "table4.md", "tables.json"):
        assert (tmp_path / name).is_file()
    saved = json.loads((tmp_path / "tables.json").read_text())
    entry = saved["datasets"]["tiny"]
    assert entry["evaluated"] == 6 and set(entry["summary"]) == set(EXPLAINERS)
    for name, s in entry["summary"].items():
        assert 0.0 <= s["acc_auc"]["mean"] <= 1.0, name
        assert s["seconds_per_graph"]["mean"] > 0, name
        assert set(s["acc"]) == {str(r) for r in tables.RATIOS}
    table2 = (tmp_path / "table2.md").read_text()
    assert "PGM-Explainer" in table2 and "not run" in table2 and "Recall@3" in table2
    assert "ReFine-FT" in (tmp_path / "table3.md").read_text()
    assert "threads" in (tmp_path / "table4.md").read_text()
    assert report["datasets"]["tiny"]["summary"] == entry["summary"]

    # resume: every (dataset, explainer, seed) is cached, nothing is explained again
    monkeypatch.setattr(tables, "evaluate_explainer", lambda *a, **k: pytest.fail("recomputed a cached result"))
    again = tables.run_tables("tiny", "", str(tmp_path), quick=True, progress=False, bundles={"tiny": bundle})
    assert again["datasets"]["tiny"]["summary"] == entry["summary"]


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        tables.run_tables("vg", "", str(tmp_path), progress=False)
