"""The paper's datasets, loaded offline: BA-3motif (generated), Mutagenicity (TU files), MNIST superpixels;
PyG OnDiskDataset graph sets for data larger than memory."""
from .ba3motif import BA3Motif, ba3motif_features, load_ba3motif_official
from .cache import dataset_sha256, default_cache_dir
from .mnist_superpixels import MNISTSuperpixels75, read_mnist_images, superpixel_graph
from .mutagenicity import Mutagenicity, find_tu_raw_dir
from .on_disk import GraphSet, open_graphs, write_graphs

__all__ = [
    "BA3Motif", "load_ba3motif_official", "ba3motif_features",
    "Mutagenicity", "find_tu_raw_dir",
    "MNISTSuperpixels75", "superpixel_graph", "read_mnist_images",
    "default_cache_dir", "dataset_sha256",
    "GraphSet", "write_graphs", "open_graphs",
]
