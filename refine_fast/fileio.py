"""Safe file writes and reads, and content fingerprints.

:func:`atomic_save` and :func:`atomic_write_text` (and any writer, through :func:`atomic_path`) write
to a temporary file beside the target and rename it into place, so a reader (or a resumed run) sees
the old file or the whole new one, never a part. The temporary file is removed on any failure, and a
full disk raises an ``OSError`` (errno ``ENOSPC``) that names the path. :func:`load_tensors` reads
tensors and plain types only, naming a file it cannot read. :func:`file_sha256` hashes a file's
bytes; :func:`tensors_sha256` hashes named tensors (names, dtypes, shapes and bytes, in name order),
so equal contents give equal fingerprints whatever the device, the dict order or the file that held
them.
"""
from __future__ import annotations

import errno
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor

__all__ = ["atomic_path", "atomic_save", "atomic_write_text", "load_tensors", "file_sha256", "tensors_sha256",
           "model_sha256"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed to ``path`` when the block
    succeeds, removed on any failure (a full disk raises ``OSError`` ENOSPC naming ``path``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device to write {path}") from error
        raise


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    """Write ``path`` through ``write(file)`` on a temporary file, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see the module docstring)."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def load_tensors(path: str | os.PathLike, what: str, **kwargs) -> Any:
    """``torch.load(path, weights_only=True, **kwargs)``: tensors and plain types only, so loading runs no
    code from the file. An empty, truncated or foreign file raises ``ValueError`` naming ``path`` as
    not a readable ``what``."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is not a readable {what}: the file is empty")
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except Exception as error:  # truncated zip, not a torch file, disallowed types, ...
        reason = str(error).strip().split("\n")[0].split(". ")[0] or type(error).__name__
        raise ValueError(f"{path} is not a readable {what} (truncated or corrupt?): {reason}") from None


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 (hex) of the bytes of the file at ``path``, read ``block`` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(tensors: Mapping[str, Tensor], extra: str = "") -> str:
    """SHA-256 (hex) of named tensors: each name, dtype, shape and the bytes of its values, in name
    order, then ``extra`` (e.g. a JSON text stored beside the tensors)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    h.update(extra.encode())
    return h.hexdigest()


def model_sha256(model: torch.nn.Module) -> str:
    """Fingerprint of a model's weights and buffers: :func:`tensors_sha256` of its ``state_dict``."""
    return tensors_sha256(model.state_dict())
