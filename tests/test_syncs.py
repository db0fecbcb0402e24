"""No host sync inside a fine-tuning or pre-training step (issue 12).

Counted on the CPU with :class:`refine_fast.testing.SyncCounter` (the profiler's record of every ATen
call): the difference between runs with more and fewer steps is what one step costs. Adam's own reads
of its step counters (host tensors unless ``capturable``) are left out. The budget must not grow with
the number of size buckets (fine-tuning) or attributor groups (pre-training).
"""
import sys

import pytest
import torch

from refine_fast import ReFine, ReFineConfig
import refine_fast.explain.fine_tune  # noqa: F401  (the module, not the function of that name)
from refine_fast.explain.grouped import plan_buckets
from refine_fast.testing import SyncCounter

fine_tune_module = sys.modules["refine_fast.explain.fine_tune"]

PRETRAIN_READS_PER_STEP = {"defaults": 6, "ba3_preset": 9}
"""Reads per pre-training step. With the defaults' contrastive term (InfoNCE on the target's representation):
all of host-side (CPU) copies of the batch layout — the batch's edge count, the selected-edge count K, and
the pack's host offsets of the batch; none reads device memory. BA-3motif's preset (Eq. 8 on the attributor's
encoder): 3 more, the explanation subgraph's kept nodes and their groups (its batch norm needs them) and
Eq. 8's off-diagonal pairs."""
CONTRASTIVE = {"defaults": {"contrastive": "infonce", "representation": "auto"}, "ba3_preset": {}}


def _syncs(fn) -> int:
    with SyncCounter(exclude=("Optimizer.step",)) as counter:
        fn()
    return counter.count


@pytest.fixture(scope="module")
def explainer(ba3_small, ba3_model, single_thread):
    config = ReFineConfig.for_dataset("ba3", epochs=1, hidden=16)
    refine = ReFine(ba3_model, num_classes=3, node_dim=4, edge_dim=0, config=config, seed=0)
    refine.pretrain(list(ba3_small)[:30], progress=False)
    return refine


@pytest.mark.parametrize("bucket_cost", [1e12, 0.0], ids=["one-bucket", "many-buckets"])
def test_fine_tune_step_has_no_sync(explainer, ba3_small, monkeypatch, bucket_cost):
    graphs = list(ba3_small)[30:60]
    monkeypatch.setattr(fine_tune_module, "BUCKET_COST", bucket_cost)
    buckets = len(plan_buckets([g.num_nodes for g in graphs], fine_tune_module.MAX_BUCKETS,
                               bucket_cost / explainer.config.hidden ** 2))
    assert (buckets == 1) == (bucket_cost > 0)

    def run(steps):
        return _syncs(lambda: explainer.explain(graphs, steps=steps, batch_size=len(graphs), workers=1,
                                                progress=False))

    one, four = run(1), run(4)
    assert four - one == 0, f"{(four - one) / 3:.1f} syncs per fine-tuning step with {buckets} buckets"


@pytest.mark.parametrize("contrastive", list(CONTRASTIVE))
def test_pretrain_step_budget_does_not_grow(ba3_small, ba3_model, single_thread, contrastive):
    graphs = list(ba3_small)
    config = ReFineConfig.for_dataset("ba3", epochs=1, hidden=16, **CONTRASTIVE[contrastive])

    def per_step(batch_size):
        refine = ReFine(ba3_model, num_classes=3, node_dim=4, edge_dim=0, config=config, seed=0)
        few = _syncs(lambda: refine.pretrain(graphs, batch_size=60, progress=False))  # 1 step
        many = _syncs(lambda: refine.pretrain(graphs, batch_size=batch_size, progress=False))
        return (many - few) / (60 // batch_size - 1)

    for batch_size in (30, 10):  # 2 and 6 steps, each batch spanning all 3 attributors
        assert per_step(batch_size) <= PRETRAIN_READS_PER_STEP[contrastive]
    assert per_step(30) == per_step(10)


def test_sync_counter_sees_a_sync():
    """The counter is not blind: boolean indexing and .item() are counted, the excluded range is not."""
    x = torch.randn(10)
    with SyncCounter() as counter:
        x[x > 0].sum().item()
    assert counter.count >= 2
    with SyncCounter(exclude=("skip",)) as counter:
        with torch.profiler.record_function("skip me"):
            x.sum().item()
    assert counter.count == 0
