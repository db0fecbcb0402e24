"""The paper's Tables 2–4: :mod:`.run` explains and scores (results cached, Table 4 timed in one pass),
:mod:`.render` writes the Markdown."""
from .render import render_tables
from .run import RATIOS, Bundle, evaluate_explainer, load_bundle, machine_info, run_tables

__all__ = ["RATIOS", "Bundle", "load_bundle", "evaluate_explainer", "run_tables", "machine_info", "render_tables"]
