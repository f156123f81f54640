"""What training needs from a model, in one place: build, save/load, reference energies, perturb.

Training works with any model class that has

- ``cutoff`` (Å) and ``atomic_energies(batch, edges)`` (the :mod:`acnn_mpi.model.forces` contract);
- ``save(path)`` and a classmethod ``load(path)`` (hyperparameters, elements and weights in one file);
- ``set_reference_energies(...)`` (per-element energies added to the network's output, eV).

The ACNN (:mod:`acnn_mpi.model.potential`) is built from the campaign's ``model`` settings; tests may
pass another factory. Inside a checkpoint a model is stored as its class's import path plus the bytes
of its own ``save`` file, so whatever the class saves is restored exactly.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch

from .checkpoint import atomic_write

ModelFactory = Callable[[object, Sequence[str]], torch.nn.Module]


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def build_acnn(model_settings, elements: Sequence[str]) -> torch.nn.Module:
    """A fresh ACNN for ``elements`` from :class:`acnn_mpi.config.ModelSettings` (``device`` aside)."""
    from ..model.potential import ACNN, ACNNHyperparameters

    names = set(ACNNHyperparameters.__dataclass_fields__) - {"elements"}
    values = {k: v for k, v in model_settings.model_dump().items() if k in names}
    return ACNN(ACNNHyperparameters(elements=list(elements), **values))


def fit_input_statistics(model: torch.nn.Module, batcher, indices: Sequence[int]) -> None:
    """Let a fresh model standardize its descriptors on training frames (when it can).

    The ACNN scales its raw features by their mean and spread over a representative batch
    (``fit_descriptor_statistics``); other models need nothing.
    """
    if not hasattr(model, "fit_descriptor_statistics") or not len(indices):
        return
    batch, edges, _ = batcher.batch(indices)
    model.fit_descriptor_statistics(batch, edges)


def _class_path(model: torch.nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str):
    module, _, name = path.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def save_model(model: torch.nn.Module, path: str | Path) -> Path:
    """``model.save`` into a temporary file in the same folder, fsync, then rename (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        model.save(tmp)
        data = Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)
    return atomic_write(path, lambda out: out.write(data))


def model_record(model: torch.nn.Module) -> dict:
    """The model as ``{"class": import path, "file": bytes of its save file}``."""
    handle, tmp = tempfile.mkstemp(prefix=".model-record.")
    os.close(handle)
    try:
        model.save(tmp)
        return {"class": _class_path(model), "file": Path(tmp).read_bytes()}
    finally:
        os.unlink(tmp)


def model_from_record(record: Mapping) -> torch.nn.Module:
    """Rebuild a model from :func:`model_record`'s output."""
    cls = _import_class(record["class"])
    handle, tmp = tempfile.mkstemp(prefix=".model-record.")
    os.close(handle)
    try:
        Path(tmp).write_bytes(record["file"])
        return cls.load(tmp)
    finally:
        os.unlink(tmp)


def load_model(path: str | Path, model_class: Optional[type] = None) -> torch.nn.Module:
    """A model from its save file (``ACNN.load`` by default), a training checkpoint or a
    committee file (:class:`~acnn_mpi.train.committee.CommitteeMean`); ValueError otherwise.

    A checkpoint gives the weights the optimizer was at, for going on; with ``ema_decay`` or
    ``keep_best`` the model a training writes (its ``model.pt``) is the averaged or best weights."""
    from .committee import CommitteeMean, read_committee_payload

    path = Path(path)
    try:
        from .checkpoint import load_checkpoint

        return model_from_record(load_checkpoint(path)["model"])
    except (ValueError, KeyError, RuntimeError, EOFError, OSError):
        pass
    if model_class is None and read_committee_payload(path) is not None:
        return CommitteeMean.load(path)
    if model_class is None:
        from ..model.potential import ACNN as model_class
    return model_class.load(path)


def model_elements(model: torch.nn.Module) -> list[str]:
    """The element symbols a model knows."""
    return list(getattr(model, "elements"))


def set_reference_energies(model: torch.nn.Module, references: Mapping[int, float]) -> None:
    """Give the model its per-element energies (atomic number -> eV per atom)."""
    from ase.data import chemical_symbols

    model.set_reference_energies({chemical_symbols[int(z)]: float(e) for z, e in references.items()})


@torch.no_grad()
def perturb_parameters(model: torch.nn.Module, scale: float, generator: torch.Generator) -> None:
    """Add Gaussian noise of ``scale`` × (each tensor's standard deviation) to every trainable tensor.

    A tensor whose entries are all equal (a zero-initialized bias, a scalar) uses ``scale`` × its mean
    absolute value instead, and an all-zero one is left as it is. The noise is drawn on the CPU from
    ``generator`` so the same seed perturbs the same way on every device and rank.
    """
    if scale <= 0:
        return
    for p in model.parameters():
        if not p.requires_grad or p.numel() == 0:
            continue
        width = float(p.detach().double().std()) if p.numel() > 1 else 0.0
        if not width > 0:
            width = float(p.detach().double().abs().mean())
        if not width > 0:
            continue
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        p.add_((scale * width * noise).to(dtype=p.dtype, device=p.device))
