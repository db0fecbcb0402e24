"""Same seed, same explanation, however the threads are timed (docs/usage.md, "Same seed, same explanation").

On the CPU, ``index_put_(..., accumulate=True)`` and the backward of tensor indexing (``x[index]``) add rows
with atomics from several threads: when two threads add into the same row, the order of the sums follows
their timing, so on a busy machine a gradient changes in its last bits and Adam amplifies it over the steps
(session 6: BA-3motif's preset, 2 threads, two busy processes). ``index_select`` / ``index_add`` add row by
row instead. These tests run every pre-training form, the torchrun batch norm and fine-tuning under a
dispatch mode that records such accumulations over integer indices (boolean masks never repeat a row):
there must be none.
"""
import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from refine_fast import ReFine, ReFineConfig
from refine_fast.explain.distributed import SyncedGroupSlices
from refine_fast.explain.target import TargetModel
from refine_fast.models import BA3MotifNet, MNISTSuperpixelNet, MutagenicityNet, ReferenceBA3Net, ReferenceMutagNet

ACCUMULATING = {"index_put", "index_put_", "_index_put_impl_", "put", "put_"}
"""Ops that can add into repeated rows with CPU atomics (indices: their second argument)."""

PRETRAIN_FORMS = {  # name: (preset of ReFineConfig.for_dataset or None for the defaults, overrides)
    "defaults": (None, {}),
    "ba3_preset": ("ba3", {}),
    "preset_batch_norm": ("ba3", {"pretrain_norm": "batch"}),
    "preset_infonce_target": ("ba3", {"contrastive": "infonce", "representation": "target"}),
    "reference_contrastive": ("ba3", {"contrastive": "reference"}),
    "mean_log": ("ba3", {"reduction": "mean", "fidelity": "log"}),
    "no_contrastive": ("ba3", {"gamma": 0.0}),
}


class AtomicAccumulations(TorchDispatchMode):
    """Records the CPU ops that accumulate into rows picked by integer indices (``calls``: op names)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ACCUMULATING and args[0].device.type == "cpu":
            accumulate = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
            indices = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            if accumulate and any(i is not None and i.dtype != torch.bool for i in indices):
                self.calls.append(name)
        return func(*args, **kwargs)


def test_the_mode_sees_an_atomic_accumulation():
    """Not blind: the backward of ``x[index]`` is seen, ``index_select``'s and a boolean mask's are not."""
    x = torch.randn(5, 3, requires_grad=True)
    index = torch.tensor([0, 2, 2, 4])
    with AtomicAccumulations() as mode:
        x[index].sum().backward()
    assert mode.calls
    with AtomicAccumulations() as mode:
        x.index_select(0, index).sum().backward()
        x[x.detach() > 0].sum().backward()
        torch.zeros(5).index_put_((index,), torch.ones(4), accumulate=False)
    assert mode.calls == []


@pytest.mark.parametrize("form", list(PRETRAIN_FORMS))
def test_pretraining_step_adds_no_rows_with_atomics(ba3_small, ba3_model, single_thread, form):
    preset, overrides = PRETRAIN_FORMS[form]
    config = ReFineConfig(hidden=16) if preset is None else ReFineConfig.for_dataset(preset, hidden=16, **overrides)
    refine = ReFine(ba3_model, num_classes=3, node_dim=4, config=config, seed=0)
    with AtomicAccumulations() as mode:
        refine.pretrain(list(ba3_small)[:40], epochs=1, batch_size=20, progress=False)
    assert mode.calls == [], f"{form}: pre-training accumulates with CPU atomics in {sorted(set(mode.calls))}"


@pytest.mark.parametrize("explain_norm", ["running", "graph"])
def test_fine_tuning_adds_no_rows_with_atomics(ba3_small, ba3_model, single_thread, explain_norm):
    refine = ReFine(ba3_model, num_classes=3, node_dim=4, hidden=16, explain_norm=explain_norm,
                    config=ReFineConfig.for_dataset("ba3"), seed=0)
    with AtomicAccumulations() as mode:
        refine.explain(list(ba3_small)[:12], steps=2, batch_size=6, workers=1, progress=False)
    assert mode.calls == [], f"fine-tuning accumulates with CPU atomics in {sorted(set(mode.calls))}"


@pytest.mark.parametrize("net", [BA3MotifNet, MutagenicityNet, MNISTSuperpixelNet, ReferenceBA3Net,
                                 ReferenceMutagNet], ids=lambda net: net.__name__)
@pytest.mark.parametrize("embed", [False, True], ids=["logits", "embed"])
def test_target_models_pass_mask_gradients_without_atomics(net, embed):
    """The gradient that reaches the edge mask through refine_fast's own target GNNs (two graphs)."""
    torch.manual_seed(0)
    model = net().eval()
    gen = torch.Generator().manual_seed(0)
    edge_dim = model.config.get("edge_dim", 0)
    x = torch.rand(12, model.config.get("in_channels"), generator=gen)
    edge_index = torch.randint(0, 6, (2, 30), generator=gen) + torch.arange(2).repeat_interleave(15) * 6
    edge_attr = torch.rand(30, edge_dim, generator=gen) if edge_dim else None
    mask = torch.rand(30, generator=gen, requires_grad=True)
    with AtomicAccumulations() as mode:
        out = TargetModel(model)(x, edge_index, torch.arange(2).repeat_interleave(6), 2, edge_attr, mask, embed=embed)
        out.square().sum().backward()
    assert mask.grad is not None and mode.calls == []


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo")
def test_torchrun_batch_norm_adds_no_rows_with_atomics(tmp_path):
    """The cross-rank batch norm of data-parallel pre-training, in a one-process gloo group."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        h = torch.randn(9, 4, requires_grad=True)
        weight, bias = torch.rand(2, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)
        with AtomicAccumulations() as mode:
            out = SyncedGroupSlices([0, 5, 9]).batch_norm(h, weight, bias, torch.zeros(2, 4), torch.ones(2, 4),
                                                          "train")
            out.square().sum().backward()
        assert mode.calls == []
    finally:
        dist.destroy_process_group()
