"""Where processed datasets are cached when their source folder is read-only."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir() -> Path:
    """``$REFINE_FAST_CACHE`` if set, else ``~/.cache/refine_fast``."""
    return Path(os.environ.get("REFINE_FAST_CACHE", Path.home() / ".cache" / "refine_fast"))
