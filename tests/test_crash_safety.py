"""Crash safety: ``refine-fast explain`` killed (SIGKILL) at seeded random points, then run again, gives
exactly the result of an uninterrupted run; every chunk left on disk is whole and checked."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from refine_fast import cli
from refine_fast.store import ExplanationStore, load_explanations

REPO = Path(__file__).resolve().parents[1]
KILLS = 3


def _argv(files, out):
    return ["explain", "--graphs", files["graphs"], "--model", files["model"], "--explainer", files["explainer"],
            "--out", out, "--steps", 10, "--chunk-size", 2, "--threads", 1, "--no-progress"]


def test_killed_explain_resumes_to_the_uninterrupted_result(tmp_path, ba3_small):
    from refine_fast.datasets import write_graphs
    from refine_fast.explain import ReFine
    from refine_fast.models import BA3MotifNet, save_model

    torch.manual_seed(0)
    model = BA3MotifNet().eval()
    files = {"model": save_model(model, tmp_path / "model.pt"), "explainer": tmp_path / "refine.pt",
             "graphs": tmp_path / "graphs"}
    ReFine(model, 3, 4, hidden=8, batch_size=16, seed=1).save(files["explainer"])
    write_graphs(files["graphs"], (ba3_small[i] for i in range(60))).close()

    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in _argv(files, tmp_path / "reference")]) == 0
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_WAIT_POLICY="PASSIVE")
    rng = random.Random(0)
    killed, left = 0, []
    for _ in range(KILLS):
        done = len(list(out.glob("chunks/chunk_*.pt")))
        proc = subprocess.Popen([sys.executable, "-m", "refine_fast.cli", *map(str, _argv(files, out))], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        # Wait until this run has written a chunk of its own (imports and start-up are slow and vary),
        # then kill it after a seeded random delay: mid-chunk, mid-write or mid-merge.
        while proc.poll() is None and len(list(out.glob("chunks/chunk_*.pt"))) <= done and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
        proc.stderr.close()
        store = ExplanationStore.open(out)  # what the kill left: only whole, checked chunks under chunk names
        written = [c for c in store.chunks() if store._path(*c).exists()]
        for s, e in written:
            store.read(s, e)
        left.append(len(store.chunks()) - len(written))
    assert killed >= 2 and any(left), f"the runs finished before they were killed ({left} chunks left): " \
                                      f"give them more work"

    try:
        assert cli.main([str(a) for a in _argv(files, out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (out / "explanations.pt").read_bytes() == (tmp_path / "reference" / "explanations.pt").read_bytes()
    got, want = load_explanations(out), load_explanations(tmp_path / "reference")
    assert torch.equal(got[0], want[0]) and all(map(torch.equal, got[1], want[1])) and got[2] == want[2]
