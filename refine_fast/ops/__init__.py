"""The three hot operations of ReFine, as ``torch.ops.refine_fast.*`` with typed wrappers.

Each submodule holds the wrapper, its pure-PyTorch reference, the fake (meta) kernel and
the autograd registration for one op.
"""
from .edge_score import edge_score, edge_score_reference
from .concrete_sample import concrete_sample, concrete_sample_reference, uniform, uniform_reference
from .segment_select import segment_select, segment_select_reference

__all__ = [
    "edge_score",
    "edge_score_reference",
    "concrete_sample",
    "concrete_sample_reference",
    "uniform",
    "uniform_reference",
    "segment_select",
    "segment_select_reference",
]
