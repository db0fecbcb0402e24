"""ReFine: class-wise pre-trained attributors, fine-tuned per instance in batches."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..fileio import atomic_save, load_tensors, model_sha256
from ..validation import (EXPLAIN_ARGS, SEED, as_graph_list, check_args, check_classes, check_features, check_int,
                          check_model_dims, model_dims)
from .attributor import StackedAttributors
from .config import ReFineConfig
from .fine_tune import check_select, fine_tune
from .packing import GraphPack
from .pretrain import pretrain
from .target import TargetModel

__all__ = ["ReFine", "attributor_edge_dim", "attributor_dims"]

_FORMAT = 1
GPU_EXPLAIN_BATCH = 2048
"""Default graphs per fine-tuning batch on CUDA: a step's many small ops are launches, so one wide batch
keeps the device busy (the CPU default, ``config.batch_size``, suits threads)."""


def attributor_edge_dim(num_edge_features: int) -> int:
    """The ``edge_dim`` of ReFine's attributors for graphs with ``num_edge_features`` edge features: 0 (none)
    when there is at most one — a single edge feature (e.g. BA-3motif's constant edge weight) is ignored,
    as in the reference implementation."""
    return int(num_edge_features) if num_edge_features > 1 else 0


def attributor_dims(dataset) -> Dict[str, int]:
    """``{"num_classes", "node_dim", "edge_dim"}`` of a PyG dataset, the :class:`ReFine` arguments for it
    (``edge_dim`` by :func:`attributor_edge_dim`)."""
    return {"num_classes": int(dataset.num_classes), "node_dim": int(dataset.num_node_features),
            "edge_dim": attributor_edge_dim(dataset.num_edge_features)}


class ReFine:
    """Multi-grained explanations for a PyG graph classifier ``model``.

    ``model(x, edge_index, batch=batch[, edge_attr=...])`` must return graph logits ``[B, num_classes]``
    (raw or log-probabilities). ``node_dim`` / ``edge_dim`` are the feature sizes the attributors read
    (``edge_dim=0``: ignore edge features). Hyper-parameters come from ``config``
    (:class:`ReFineConfig`, e.g. ``ReFineConfig.for_dataset('ba3')``), with ``hidden`` and any
    ``**overrides`` applied on top. ``seed`` initializes the attributors.

    Variants: ReFine (default), ReFine-FT (``explain(steps=0)``), ReFine-CT (``gamma=0``),
    PGExplainer-equivalent (``class_wise=False, gamma=0`` and ``explain(steps=0)``).
    """

    def __init__(self, model: torch.nn.Module, num_classes: int, node_dim: int, edge_dim: int = 0,
                 hidden: Optional[int] = None, config: Optional[ReFineConfig] = None, seed: int = 0,
                 use_edge_attr: Optional[bool] = None, **overrides):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"ReFine: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, (ReFineConfig, type(None))):
            raise TypeError(f"ReFine: config must be a ReFineConfig or None, got {type(config).__name__}")
        config = config or ReFineConfig()
        if hidden is not None:
            overrides["hidden"] = hidden
        self.config = config.replace(**overrides) if overrides else config
        self.num_classes = check_int(num_classes, "ReFine: num_classes", 1)
        node_dim, edge_dim = check_int(node_dim, "ReFine: node_dim", 1), check_int(edge_dim, "ReFine: edge_dim", 0)
        SEED.check(seed, "ReFine: seed")
        check_model_dims(model, "ReFine", node_dim, edge_dim)
        self.target = TargetModel(model, use_edge_attr)
        groups = self.num_classes if self.config.class_wise else 1
        self.attributors = StackedAttributors(groups, node_dim, edge_dim, self.config.hidden,
                                              self.config.num_layers, seed=seed, bias_init=self.config.bias_init)
        self.attributors.eval()

    @property
    def model(self) -> torch.nn.Module:
        return self.target.model

    def to(self, *args, **kwargs) -> "ReFine":
        """Move / cast the attributors (``refine.to(torch.float64)``, ``refine.to('cuda')``)."""
        self.attributors.to(*args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return self.attributors.lin_weight.device

    def input_checks(self, name: str) -> dict:
        """What the graphs must have (keywords of :func:`refine_fast.validation.stack_graphs`): the
        attributors' feature widths, and the edge features the model declares when it reads them."""
        a = self.attributors
        model_edge_dim = model_dims(self.model)["edge_dim"] if self.target.use_edge_attr else None
        return dict(name=name, node_dim=a.node_dim, edge_dim=a.edge_dim or model_edge_dim,
                    dtype=a.lin_weight.dtype)

    def _prepare(self, graphs, graph_ids=None, batch_size: int = 256, classes=None, caller: str = "ReFine",
                 arg: str = "graphs"):
        """Pack (and check: errors name ``caller: arg``) graphs; full-graph softmax ``[n, C]``, predicted
        (or given) class and attributor group."""
        checks = self.input_checks(f"{caller}: {arg}")
        if isinstance(graphs, GraphPack):
            pack = graphs
            check_features(pack.x, pack.edge_attr, **checks)
        else:
            pack = GraphPack(graphs, graph_ids, device=self.device, **checks)
        with self.target.frozen():
            logits = self.target.predict(pack, batch_size)
        if logits.size(1) != self.num_classes:
            raise ValueError(f"ReFine: the model returns {logits.size(1)} classes, expected {self.num_classes}")
        probs = torch.softmax(logits.to(self.attributors.lin_weight.dtype), dim=-1)
        cls = logits.argmax(-1) if classes is None else check_classes(
            classes, len(pack), self.num_classes, f"{caller}: classes", self.device)
        groups = cls if self.config.class_wise else torch.zeros_like(cls)
        return pack, probs, cls, groups

    def pretrain(self, dataset: Sequence, epochs: Optional[int] = None, batch_size: Optional[int] = None,
                 seed: int = 0, val_dataset: Optional[Sequence] = None, progress: bool = True) -> Dict[str, list]:
        """Pre-train the attributors on ``dataset`` (PyG ``Data`` graphs; labels are not used — each
        graph is explained for the model's predicted class). Defaults from the config.
        Returns the per-epoch history (see :func:`refine_fast.explain.pretrain.pretrain`)."""
        SEED.check(seed, "ReFine.pretrain: seed")
        data, options = self.pretrain_inputs(dataset, epochs, batch_size, val_dataset)
        with self.target.frozen():
            return pretrain(self.attributors, self.target, *data, self.config, seed=seed, progress=progress,
                            **options)

    def pretrain_inputs(self, dataset: Sequence, epochs: Optional[int] = None, batch_size: Optional[int] = None,
                        val_dataset: Optional[Sequence] = None) -> tuple:
        """``((pack, groups, classes, probs), {epochs, batch_size, val})`` for the pre-training loops
        (:func:`.pretrain.pretrain` and its torchrun twin), with the config's defaults filled in. With
        ``train_on='correct'`` only the graphs the model predicts correctly (``y``) are kept."""
        check_args("ReFine.pretrain", EXPLAIN_ARGS, batch_size=batch_size)
        epochs = self.config.epochs if epochs is None else check_int(epochs, "ReFine.pretrain: epochs", 0)
        batch_size = self.config.batch_size if batch_size is None else int(batch_size)
        pack, probs, cls, groups = self._prepare(self._training_graphs(dataset, batch_size, "dataset"),
                                                 batch_size=batch_size, caller="ReFine.pretrain", arg="dataset")
        val = None
        if val_dataset is not None:
            vpack, vprobs, vcls, vgroups = self._prepare(self._training_graphs(val_dataset, batch_size, "val_dataset"),
                                                         batch_size=batch_size, caller="ReFine.pretrain",
                                                         arg="val_dataset")
            val = (vpack, vgroups, vcls, vprobs)
        return (pack, groups, cls, probs), {"epochs": epochs, "batch_size": batch_size, "val": val}

    def _training_graphs(self, graphs: Sequence, batch_size: int, name: str) -> list:
        """``graphs`` as a list, or (``train_on='correct'``) the ones whose predicted class equals ``y``."""
        graphs = as_graph_list(graphs, f"ReFine.pretrain: {name}")
        if self.config.train_on == "all" or not graphs:
            return graphs
        labels = [getattr(g, "y", None) for g in graphs]
        missing = [i for i, y in enumerate(labels) if y is None or y.numel() != 1]
        if missing:
            raise ValueError(f"ReFine.pretrain: train_on='correct' needs one label y per graph; {name}[{missing[0]}] "
                             f"has {'none' if labels[missing[0]] is None else tuple(labels[missing[0]].shape)}")
        _, _, cls, _ = self._prepare(graphs, batch_size=batch_size, caller="ReFine.pretrain", arg=name)
        y = torch.tensor([int(t) for t in labels], device=cls.device)
        keep = torch.nonzero(cls == y).view(-1).tolist()
        if not keep:
            raise ValueError(f"ReFine.pretrain: the model predicts none of the {len(graphs)} graphs of {name} "
                             f"correctly (train_on='correct')")
        return [graphs[i] for i in keep]

    def explain(self, graphs: Sequence, ratio: Optional[float] = None, steps: Optional[int] = None,
                lr: Optional[float] = None, seed: int = 0, batch_size: Optional[int] = None,
                graph_ids: Optional[Sequence[int]] = None, progress: Union[bool, tqdm] = True,
                classes: Optional[Union[Sequence[int], Tensor]] = None, workers: Optional[int] = None,
                select: str = "sample") -> List[Tensor]:
        """Edge importances, one ``[E_g]`` tensor per graph in input order.

        Fine-tunes a copy of the attributor of each graph's predicted class (or ``classes``) for
        ``steps`` Adam steps (lr ``lr``) at selection ratio ``ratio``, each step picking its edges by
        ``select`` (``'sample'``: stochastically by probability, paper Eq. 9; ``'top'``: the top-ρ edges,
        as the reference implementation); defaults from the config
        (``ratio``, ``fine_tune_steps``, ``fine_tune_lr``, ``batch_size``; on CUDA at least
        :data:`GPU_EXPLAIN_BATCH`). ``steps=0`` = ReFine-FT.
        ``graph_ids`` (default ``0..n-1``) name the graphs in the noise keys: the same id and ``seed``
        give the same explanation whatever the batch, up to float rounding grown over the steps (float32:
        within 1e-3, see docs/usage.md). ``workers`` (default ``torch.get_num_threads()``; 1 on CUDA)
        batches run concurrently in threads with one intra-op thread each — on a small CPU this beats
        intra-op parallelism of the many small ops; results differ across ``workers`` as across batchings.
        ``progress``: show a bar of graphs done, or advance the given ``tqdm`` bar by them.
        Every argument is checked first (:mod:`refine_fast.validation`): the graphs against the
        attributors' ``node_dim`` / ``edge_dim``, finite features, ``edge_index`` in range, one
        ``edge_attr`` row per edge."""
        check_args("ReFine.explain", EXPLAIN_ARGS, ratio=ratio, steps=steps, lr=lr, batch_size=batch_size,
                   seed=seed, workers=workers)
        ratio = self.config.ratio if ratio is None else ratio
        steps = self.config.fine_tune_steps if steps is None else int(steps)
        lr = self.config.fine_tune_lr if lr is None else float(lr)
        batch_size = self.explain_batch_size() if batch_size is None else int(batch_size)
        if workers is None:
            workers = 1 if self.attributors.lin_weight.is_cuda else torch.get_num_threads()
        check_select(select, "ReFine.explain")
        if not isinstance(graphs, GraphPack):
            graphs = as_graph_list(graphs, "ReFine.explain: graphs")
        if len(graphs) == 0:
            return []
        pack, probs, _, groups = self._prepare(graphs, graph_ids, batch_size, classes, caller="ReFine.explain")
        with self.target.frozen():
            out = fine_tune(self.attributors, self.target, pack, groups, probs, self.config, ratio=float(ratio),
                            steps=steps, lr=lr, seed=seed, batch_size=batch_size, progress=progress,
                            workers=int(workers), select=select)
        return [o.detach() for o in out]

    def explain_batch_size(self) -> int:
        """Graphs per fine-tuning batch when none is given: ``config.batch_size``, on CUDA at least
        :data:`GPU_EXPLAIN_BATCH`."""
        if self.attributors.lin_weight.is_cuda:
            return max(self.config.batch_size, GPU_EXPLAIN_BATCH)
        return self.config.batch_size

    def state(self) -> dict:
        """Everything :meth:`load` needs, as tensors and plain Python types, and ``model_sha256``, the
        fingerprint of the target model (:func:`refine_fast.fileio.model_sha256`) the attributors were
        pre-trained for."""
        a = self.attributors
        return {"format": _FORMAT, "config": self.config.to_dict(), "num_classes": self.num_classes,
                "node_dim": a.node_dim, "edge_dim": a.edge_dim, "use_edge_attr": self.target.use_edge_attr,
                "state_dict": {k: v.detach().cpu() for k, v in a.state_dict().items()},
                "model_sha256": model_sha256(self.model)}

    def save(self, path: Union[str, Path]) -> None:
        """Write weights and config (atomically); loadable with ``torch.load(path, weights_only=True)``."""
        atomic_save(self.state(), path)

    @classmethod
    def load(cls, path: Union[str, Path], model: torch.nn.Module, map_location=None,
             strict_model: bool = False) -> "ReFine":
        """Rebuild a saved ReFine around the target ``model``.

        The file records the fingerprint of the model it was pre-trained for: another ``model`` gives
        a warning, or a ``ValueError`` with ``strict_model=True``. Files written before fingerprints
        were recorded load with a warning that they cannot be checked."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ReFine.load: no explainer file at {path}")
        try:
            state = load_tensors(path, "explainer file", map_location=map_location or "cpu")
        except ValueError as error:
            raise ValueError(f"ReFine.load: {error}") from None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"ReFine.load: {path} is not a refine_fast ReFine file (format {got})")
        missing = sorted({"config", "num_classes", "node_dim", "edge_dim", "use_edge_attr", "state_dict"} - set(state))
        if missing:
            raise ValueError(f"ReFine.load: {path} lacks {missing}; not a complete ReFine file")
        expected, actual = state.get("model_sha256"), model_sha256(model)
        if expected is None:
            warnings.warn(f"ReFine.load: {path} records no fingerprint of the model it was pre-trained for "
                          f"(written by an older refine_fast), so it cannot be checked against this model",
                          stacklevel=2)
        elif expected != actual:
            message = (f"ReFine.load: {path} was pre-trained for another model (model sha256 {expected[:12]}…, "
                       f"this model's {actual[:12]}…)")
            if strict_model:
                raise ValueError(message)
            warnings.warn(message + "; its explanations may not explain this model", stacklevel=2)
        try:
            refine = cls(model, state["num_classes"], state["node_dim"], state["edge_dim"],
                         config=ReFineConfig.from_dict(state["config"]), use_edge_attr=state["use_edge_attr"])
            sd = state["state_dict"]
            refine.attributors.to(sd["lin_weight"].dtype)
            refine.attributors.load_state_dict(sd)
        except (TypeError, ValueError) as error:  # settings that do not fit the model (or are invalid)
            raise type(error)(f"ReFine.load: {path}: {error}") from error
        except (KeyError, RuntimeError) as error:  # missing weights, or weights of other shapes
            raise ValueError(f"ReFine.load: {path} holds weights that do not fit its settings: {error}") from error
        return refine
