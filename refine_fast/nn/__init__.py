"""Neural-network modules built on refine_fast's kernels."""
from .edge_score_mlp import EdgeScoreMLP, edge_mlp

__all__ = ["EdgeScoreMLP", "edge_mlp"]
