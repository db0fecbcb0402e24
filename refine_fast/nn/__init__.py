"""Neural-network modules built on refine_fast's kernels."""
from .edge_score_mlp import EdgeScoreMLP

__all__ = ["EdgeScoreMLP"]
