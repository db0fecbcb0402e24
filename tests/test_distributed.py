"""Two processes on one machine (torchrun, gloo, loopback) against one process: explanations equal
exactly, a resumed run recomputes only the missing chunk, and data-parallel pre-training matches."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from refine_fast import cli

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is required")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=nproc ARGS`` on 127.0.0.1, one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def in_process(*argv):
    """The CLI in this process (one thread), for the single-process reference runs."""
    threads = torch.get_num_threads()
    try:
        return cli.main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ba3(tmp_path_factory):
    """Generated BA-3motif in a temporary cache, a target GNN trained for one epoch, and a ReFine
    pre-trained for one epoch by ``refine-fast pretrain`` in this process."""
    from refine_fast.models import train_for_dataset

    root = tmp_path_factory.mktemp("distributed")
    cache = root / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_for_dataset("ba3", ".", root / "model", epochs=1, cache_dir=cache, progress=False)
    finally:
        torch.set_num_threads(threads)
    common = ["--dataset", "ba3", "--cache-dir", cache, "--model", root / "model" / "model.pt", "--threads", 1,
              "--no-progress"]
    in_process("pretrain", *common, *PRETRAIN, "--out", root / "explainer.pt")
    return root, common


PRETRAIN = ["--epochs", 1, "--hidden", 8]


def _merged(directory: Path) -> dict:
    return torch.load(directory / "explanations.pt", weights_only=True)


def test_two_processes_explain_exactly_like_one_and_resume(ba3):
    root, common = ba3
    common = common + ["--explainer", root / "explainer.pt", "--steps", 2, "--chunk-size", 100]
    in_process("explain", *common, "--out", root / "single")
    torchrun("-m", "refine_fast.cli", "explain", *common, "--out", root / "two")
    single, two = _merged(root / "single"), _merged(root / "two")
    assert single["graph_ids"].numel() == 400 and len(list((root / "two" / "chunks").glob("chunk_*.pt"))) == 4
    for key in ("graph_ids", "ptr", "importance"):
        assert torch.equal(single[key], two[key]), key

    # a killed run: one chunk and the merged file missing -> only that chunk is recomputed
    chunks = sorted((root / "two" / "chunks").glob("chunk_*.pt"))
    lost = chunks[1]
    before = {c: c.stat().st_mtime_ns for c in chunks if c != lost}
    lost.unlink()
    (root / "two" / "explanations.pt").unlink()
    torchrun("-m", "refine_fast.cli", "explain", *common, "--out", root / "two")
    assert lost.is_file()
    assert {c: c.stat().st_mtime_ns for c in before} == before
    resumed = _merged(root / "two")
    for key in ("graph_ids", "ptr", "importance"):
        assert torch.equal(single[key], resumed[key]), key


WORKER = textwrap.dedent('''
    """Rank worker: float64 data-parallel pre-training of a small ReFine (rank 0 saves the result), then
    ``refine-fast pretrain ARGS`` in the same process group (one launch, two checks)."""
    import sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[1])
    from test_distributed import tiny_refine
    from refine_fast import cli
    from refine_fast.explain.distributed import pretrain_refine

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    refine, train, val = tiny_refine(sys.argv[2])
    history = pretrain_refine(refine, train, epochs=2, batch_size=16, seed=3, val_dataset=val, progress=False)
    if dist.get_rank() == 0:
        torch.save({"state": refine.attributors.state_dict(), "history": history}, sys.argv[3])
    cli.main(sys.argv[4:])  # joins the initialized group, destroys it at the end
''')


def tiny_refine(cache):
    """A float64 ReFine (hidden 12, 3 class-wise attributors) on an untrained BA3MotifNet and 33 train /
    12 validation generated BA-3motif graphs (33 = 16 + 16 + 1: the last batch leaves a rank empty)."""
    from torch_geometric.data import Data

    from refine_fast.datasets import BA3Motif
    from refine_fast.explain import ReFine
    from refine_fast.models import BA3MotifNet

    torch.manual_seed(0)
    model = BA3MotifNet().double().eval()
    graphs = [Data(x=g.x.double(), edge_index=g.edge_index) for g in BA3Motif(cache, seed=0, graphs_per_class=15)]
    refine = ReFine(model, 3, 4, hidden=12, lr=1e-2, seed=1).to(torch.float64)
    return refine, graphs[:33], graphs[33:]


def test_data_parallel_pretraining_matches_one_process(ba3, tmp_path):
    """float64, 2 epochs of 33 graphs in batches of 16 (a rank idle in the last batch): within 1e-5 of
    one process; ``refine-fast pretrain`` under torchrun (float32, 1 epoch) close to the in-process run."""
    root, common = ba3
    cache = tmp_path / "cache"
    refine, train, val = tiny_refine(cache)  # also builds the cached dataset the ranks read
    (tmp_path / "worker.py").write_text(WORKER)
    torchrun(tmp_path / "worker.py", Path(__file__).resolve().parent, cache, tmp_path / "ddp.pt",
             "pretrain", *common, *PRETRAIN, "--out", tmp_path / "explainer.pt")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    one = torch.load(root / "explainer.pt", weights_only=True)
    two = torch.load(tmp_path / "explainer.pt", weights_only=True)
    assert one["config"] == two["config"]
    for k, v in one["state_dict"].items():
        # float32: a conv bias feeding a batch norm has a gradient that is 0 up to roundoff wherever its
        # ReLU is active on all rows; Adam scales that noise to ~lr per step (9 steps of 1e-4 here)
        shifted = k.startswith("conv") and k.endswith("_bias") or k.endswith("_mean")
        torch.testing.assert_close(two["state_dict"][k], v, rtol=0, atol=1e-3 if shifted else 1e-5, msg=k)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = refine.pretrain(train, epochs=2, batch_size=16, seed=3, val_dataset=val, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert set(history) == set(ddp["history"])
    for k, v in history.items():
        torch.testing.assert_close(torch.tensor(ddp["history"][k]), torch.tensor(v), rtol=0, atol=1e-5)
    state = refine.attributors.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(ddp["state"][k], v, rtol=0, atol=1e-5, msg=k)
    init = tiny_refine(cache)[0].attributors.state_dict()
    moved = max(float((state[k] - init[k]).abs().max()) for k in state)
    assert moved > 1e-3  # the steps did change the attributors
