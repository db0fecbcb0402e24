"""Passive OpenMP waits (refine_fast.threads): set before torch loads, a user's setting kept, and the warning
for library users who imported torch first on a busy machine."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from refine_fast import threads

REPO_ROOT = Path(__file__).resolve().parents[1]

# Records OMP_WAIT_POLICY at the moment torch is first imported, then imports what the console script
# `refine-fast` imports.
PROBE = """
import json, os, sys
seen = {}
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Probe())
if LOAD is not None:
    os.getloadavg = lambda: (LOAD, LOAD, LOAD)
from refine_fast.cli import main
print(json.dumps({"at_torch_import": seen["torch"], "after": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _probe(policy=None, load=None):
    """``(record, spin_count)``: the probe's JSON and libgomp's GOMP_SPINCOUNT (None on another runtime)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_DISPLAY_ENV="VERBOSE")
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    run = subprocess.run([sys.executable, "-c", f"LOAD = {load!r}\n" + PROBE], env=env, capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    spin = [line.split("=")[1].strip().strip("'") for line in run.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")]
    return json.loads(run.stdout.strip().splitlines()[-1]), (spin[0] if spin else None)


def test_import_sets_passive_before_torch_on_a_busy_machine():
    record, spin = _probe(load=3.7)  # issue 15's machine: 2 cores
    assert record == {"at_torch_import": "PASSIVE", "after": "PASSIVE"}
    if spin is not None:  # GNU OpenMP reports what it read: passive = no spinning
        assert spin == "0"


def test_import_keeps_spinning_waits_on_a_quiet_machine():
    record, spin = _probe(load=0.0)
    assert record == {"at_torch_import": None, "after": None}
    if spin is not None:
        assert spin != "0"


@pytest.mark.parametrize("load, cores, wanted", [(3.7, 2, True), (1.0, 2, True), (0.6, 2, False),
                                                 (0.0, 1, False), (3.9, 8, False), (4.0, 8, True)])
def test_passive_wanted(load, cores, wanted):
    assert threads.passive_wanted(load, cores) is wanted


def test_import_keeps_the_users_policy():
    record, spin = _probe("ACTIVE")
    assert record == {"at_torch_import": "ACTIVE", "after": "ACTIVE"}
    if spin is not None:
        assert spin != "0"


@pytest.mark.parametrize("threads_, load, cores, warns", [
    (2, 3.7, 2, True),      # issue 15's machine
    (2, 2.0, 2, False),     # load == cores is not oversubscribed
    (2, 0.3, 2, False),     # quiet machine
    (1, 9.0, 2, False),     # one thread never waits on another
    (16, 12.5, 8, True),
    (16, 7.9, 8, False),
])
def test_spin_warning(threads_, load, cores, warns):
    message = threads.spin_warning(threads_, load, cores)
    assert (message is not None) == warns
    if warns:
        assert "OMP_WAIT_POLICY=PASSIVE" in message and f"load {load:.1f} on {cores} cores" in message


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("policy, load, warns", [(None, 5.0, True), (None, 0.5, False), ("ACTIVE", 5.0, False),
                                                 ("PASSIVE", 5.0, False)])
def test_torch_imported_first(monkeypatch, two_threads, policy, load, warns):
    """Here torch is loaded before prefer_passive_waits runs: it never changes the variable, and warns only
    when the user set none and the machine is busy."""
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads.prefer_passive_waits()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == \
        ([threads.spin_warning(2, load, 2)] if warns else [])
    assert os.environ.get("OMP_WAIT_POLICY") == policy


def test_usable_cores():
    cores = threads.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or cores)
