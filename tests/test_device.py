"""Device choice (refine_fast.device, the CLI's --device) and the import-time diagnosis of the extension."""
import re
import warnings

import pytest
import torch

import refine_fast
from refine_fast import _C
from refine_fast.device import cuda_usable, load_failure_message, resolve_device


@pytest.fixture
def machine(monkeypatch):
    """Pretends a machine: ``machine(gpus, has_cuda)``."""

    def pretend(gpus: int, has_cuda: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(_C, "has_cuda", lambda: has_cuda)

    return pretend


def test_cpu_machine(machine):
    machine(0, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="built without CUDA kernels"):
        resolve_device("cuda")
    machine(0, True)  # a CUDA build on a machine without a GPU
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="torch sees no GPU"):
        resolve_device("cuda")


def test_gpu_but_extension_without_cuda(machine):
    # A CPU-only build on a GPU machine (no CUDA_HOME at build time): the CPU, with a warning.
    machine(2, False)
    assert not cuda_usable()
    with pytest.warns(RuntimeWarning, match=r"torch sees a GPU, but refine_fast._C was built without CUDA"):
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device cuda asked for, but refine_fast._C was built without CUDA"):
        resolve_device("cuda")


@pytest.mark.parametrize("local_rank,gpus,expected", [(None, 1, 0), (0, 2, 0), (3, 2, 1), (1, 1, 0), (5, 8, 5)])
def test_ranks_map_to_local_rank_modulo_gpus(machine, monkeypatch, local_rank, gpus, expected):
    machine(gpus, True)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", expected)


def test_explicit_devices(machine):
    machine(2, True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="sees 2 GPU"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="cpu or cuda, got device meta"):
        resolve_device("meta")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_load_failure_messages(tmp_path):
    missing = load_failure_message(ImportError("No module named 'refine_fast._C'"), str(tmp_path), None)
    assert "is missing from" in missing
    (tmp_path / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    cuda_error = ImportError("libc10_cuda.so: cannot open shared object file: No such file or directory")
    # A CUDA build loaded under a torch without CUDA is not reported as missing.
    message = load_failure_message(cuda_error, str(tmp_path), None)
    assert "was built with CUDA, but this torch" in message and "missing" not in message
    other = load_failure_message(ImportError("undefined symbol: _ZN3c10"), str(tmp_path), "13.0")
    assert "built against another torch" in other


def test_cli_device_option(machine, monkeypatch, tmp_path, capsys):
    from refine_fast.cli import build_parser, main

    for command in ("demo", "train-gnn", "pretrain", "explain", "evaluate"):
        action = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices[command]._actions}
        assert action["device"].default == "auto", command
    machine(0, False)
    assert main(["train-gnn", "--dataset", "ba3", "--out", str(tmp_path), "--device", "cuda"]) == 2
    assert re.fullmatch(r"refine-fast train-gnn: error: --device: .*built without CUDA kernels.*\n",
                        capsys.readouterr().err)
    machine(1, True)
    assert main(["evaluate", "--table", "--out", str(tmp_path), "--device", "cuda:0"]) == 2
    assert "--table runs on the CPU" in capsys.readouterr().err


def test_package_exports_device_module():
    assert refine_fast.device.resolve_device is resolve_device
