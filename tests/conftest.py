"""Shared fixtures: the real-data root, small generated BA-3motif graphs and a seeded target GNN."""
import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads made small
# ops 40-100x slower. It must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    """``$REFINE_FAST_SHARED``, else ``<repo>/../shared``, else ``/work/shared`` (from a git worktree)."""
    if "REFINE_FAST_SHARED" in os.environ:
        return Path(os.environ["REFINE_FAST_SHARED"])
    beside = REPO_ROOT.parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


DATA_ROOT = _shared() / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``../shared/data`` relative to the repository (tests using it are skipped when it is absent)."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def ba3_official_path(data_root) -> Path:
    path = data_root / "ba3motif" / "ba3motif_official_subset800.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def ba3_cache(tmp_path_factory) -> Path:
    """A writable cache root shared by the session (generated datasets are built once)."""
    return tmp_path_factory.mktemp("refine_fast_cache")


@pytest.fixture(scope="session")
def ba3_small(ba3_cache):
    """60 generated BA-3motif graphs (20 per class), edges stored once."""
    from refine_fast.datasets import BA3Motif
    return BA3Motif(ba3_cache, seed=0, graphs_per_class=20)


@pytest.fixture(scope="session")
def ba3_full(ba3_cache):
    """The full generated BA-3motif (3,000 graphs, seed 0), cached in ``ba3_cache``."""
    from refine_fast.datasets import BA3Motif
    return BA3Motif(ba3_cache, seed=0)


@pytest.fixture(scope="session")
def ba3_model():
    """An untrained, seeded BA3MotifNet in eval mode (a deterministic black box for metric tests)."""
    from refine_fast.models import BA3MotifNet
    torch.manual_seed(0)
    return BA3MotifNet().eval()


@pytest.fixture
def random_importances():
    """``make(graphs, seed, levels=None)`` -> one ``[E_g]`` tensor per graph; ``levels`` draws from a
    few values so that ties occur."""
    def make(graphs, seed=0, levels=None):
        g = torch.Generator().manual_seed(seed)
        out = []
        for data in graphs:
            if levels is None:
                out.append(torch.rand(data.num_edges, generator=g))
            else:
                out.append(torch.randint(0, levels, (data.num_edges,), generator=g).float())
        return out
    return make


@pytest.fixture(scope="session")
def ba3_official(ba3_official_path):
    """The 800 official BA-3motif graphs (edges stored once) as ``Data`` objects."""
    from refine_fast.datasets import load_ba3motif_official
    return load_ba3motif_official(ba3_official_path)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module with one intra-op thread (small graphs: threads only add overhead on a busy host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
