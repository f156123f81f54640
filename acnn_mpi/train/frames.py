"""Labelled frames held in memory for training, and minibatches built from them.

Training reads its whole (training + validation) set once into :class:`Frame` objects (numpy, float64)
and builds every minibatch from them. Positions never change during training, so each frame's
neighbour list is computed once and reused (:class:`FrameBatcher`); a minibatch's edges are the
frames' edges with atom offsets added, exactly what :func:`~acnn_mpi.neighbors.neighbor_list` would
return for the batch.

Sources (:func:`read_labelled`, :func:`load_frames`): an HDF5 frame store (path or open
:class:`~acnn_mpi.data.store.FrameStore`), any file :func:`acnn_mpi.data.io.read_frames` reads
(extended XYZ, OUTCAR, vasprun.xml, DeePMD folders, ASE databases), a list of ASE ``Atoms`` with
energies (and forces, stress) attached, or a list of :class:`Frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from ..errors import UserError
from ..neighbors import Edges, neighbor_list
from ..state import Batch

@dataclass
class Frame:
    """One labelled structure.

    Attributes:
        positions: (n, 3) Å.  numbers: (n,) atomic numbers.  cell: (3, 3) Å, rows.  pbc: (3,) bool.
        energy: total energy, eV.
        forces: (n, 3) eV/Å, or None when not labelled.
        stress: (3, 3) eV/Å³ in ASE's sign (positive = tensile), or None when not labelled.
        weight: factor on the frame's loss terms (below 1 for a down-weighted collapsed cell).
    """

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: Optional[np.ndarray] = None
    stress: Optional[np.ndarray] = None
    weight: float = 1.0

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.cell)))


@dataclass
class Targets:
    """Reference labels of a minibatch, as tensors on the model's device.

    energy (B,) eV; forces (N, 3) eV/Å; virial (B, 3, 3) eV (W = -V σ); has_forces / has_virial (B,)
    bool masks; n_atoms (B,) float; system_idx (N,) structure of each atom; weight (B,) factor on
    each structure's loss terms.
    """

    energy: torch.Tensor
    forces: torch.Tensor
    virial: torch.Tensor
    has_forces: torch.Tensor
    has_virial: torch.Tensor
    n_atoms: torch.Tensor
    system_idx: torch.Tensor
    weight: Optional[torch.Tensor] = None


def frame_from_atoms(atoms) -> Frame:
    """A :class:`Frame` from ASE ``Atoms`` (labels found as :func:`acnn_mpi.data.frames.frame_labels`
    finds them: calculator results, then ``info``/``arrays``)."""
    from ..data.frames import frame_labels

    labels = frame_labels(atoms)
    if labels.energy is None:
        raise ValueError("no energy label (calculator result or info['energy'])")
    return Frame(
        positions=np.array(atoms.get_positions(), dtype=np.float64),
        numbers=np.array(atoms.get_atomic_numbers(), dtype=np.int64),
        cell=np.array(atoms.get_cell(), dtype=np.float64),
        pbc=np.array(atoms.get_pbc(), dtype=bool),
        energy=float(labels.energy),
        forces=labels.forces,
        stress=labels.stress,
    )


def frames_from_arrays(arrays) -> list[Frame]:
    """Frames from a :class:`acnn_mpi.data.frames.FrameArrays` (what the store reads)."""
    offsets = arrays.offsets
    out = []
    for b in range(len(arrays)):
        lo, hi = offsets[b], offsets[b + 1]
        out.append(Frame(positions=arrays.positions[lo:hi], numbers=arrays.numbers[lo:hi].astype(np.int64),
                         cell=arrays.cell[b], pbc=arrays.pbc[b], energy=float(arrays.energy[b]),
                         forces=arrays.forces[lo:hi],
                         stress=arrays.stress[b] if arrays.has_stress[b] else None))
    return out


def _is_store(source: Any) -> bool:
    if isinstance(source, (str, Path)):
        from ..data.io import detect_format

        return Path(source).is_file() and detect_format(source) == "store"
    return hasattr(source, "read_arrays")


def _to_frame(record: Any) -> Frame:
    if isinstance(record, Frame):
        return record
    return frame_from_atoms(record)


@dataclass
class Loaded:
    """Frames read from one source: the usable ``frames``, their index in the source (``ids``),
    one message per rejected frame, and how many frames the source holds (``n_source``)."""

    frames: list
    ids: list
    rejected: list
    n_source: int = 0


def _read_store(store, indices) -> tuple[list[Frame], list[int], int]:
    ids = list(range(len(store))) if indices is None else [int(i) for i in indices]
    return (frames_from_arrays(store.read_arrays(ids)) if ids else []), ids, len(store)


def read_labelled(source: Any, indices: Optional[Sequence[int]] = None,
                  allowed_numbers: Optional[Iterable[int]] = None, name: str = "") -> Loaded:
    """Read frames and leave out the unusable ones, each reported by its index in the source.

    Frames from a file or from ASE ``Atoms`` go through :func:`acnn_mpi.data.validate.validate_frames`
    (missing or non-finite labels, wrong shapes, elements not in ``allowed_numbers``, atoms closer
    than 0.3 Å). Frames from a frame store were validated when they were appended; here only their
    elements and the finiteness of their labels are checked again.
    """
    from ..data.validate import validate_frames

    label = f" of {name}" if name else ""
    if _is_store(source):
        if isinstance(source, (str, Path)):
            from ..data.store import FrameStore

            with FrameStore(source, "r") as store:
                frames, ids, n_source = _read_store(store, indices)
        else:
            frames, ids, n_source = _read_store(source, indices)
        keep, rejected = [], []
        allowed = None if allowed_numbers is None else set(int(z) for z in allowed_numbers)
        for frame, i in zip(frames, ids):
            problems = quick_problems(frame, allowed)
            if problems:
                rejected.append(f"frame {i}{label}: " + "; ".join(problems))
            else:
                keep.append((frame, i))
        return Loaded([f for f, _ in keep], [i for _, i in keep], rejected, n_source)
    if isinstance(source, (str, Path)):
        from ..data.io import read_frames

        path = Path(source)
        if not path.exists():
            raise UserError(f"data file {path} not found")
        records = read_frames(path)
    else:
        records = list(source)
    n_source = len(records)
    ids = list(range(n_source)) if indices is None else [int(i) for i in indices]
    records = [records[i] for i in ids]
    as_atoms = [r if not isinstance(r, Frame) else _frame_atoms(r) for r in records]
    if not as_atoms:
        return Loaded([], [], [], n_source)
    report = validate_frames(as_atoms, allowed_elements=allowed_numbers, on_bad="skip")
    rejected = [f"frame {ids[i]}{label}: " + "; ".join(p) for i, p in sorted(report.bad.items())]
    return Loaded([_to_frame(records[i]) for i in report.good], [ids[i] for i in report.good],
                  rejected, n_source)


def load_frames(source: Any, indices: Optional[Sequence[int]] = None) -> list[Frame]:
    """Frames of a frame store (path or object), a file the data package reads (extxyz, OUTCAR,
    DeePMD folder, ...), or a sequence of ASE ``Atoms``/Frames, without validation.

    Raises:
        UserError: the file does not exist or cannot be read.
    """
    if _is_store(source):
        if isinstance(source, (str, Path)):
            from ..data.store import FrameStore

            with FrameStore(source, "r") as store:
                return _read_store(store, indices)[0]
        return _read_store(source, indices)[0]
    if isinstance(source, (str, Path)):
        from ..data.io import read_frames

        if not Path(source).exists():
            raise UserError(f"data file {source} not found")
        source = read_frames(source)
    records = list(source)
    if indices is not None:
        records = [records[int(i)] for i in indices]
    return [_to_frame(r) for r in records]


def quick_problems(frame: Frame, allowed: Optional[set[int]] = None) -> list[str]:
    """Elements outside ``allowed`` and non-finite labels (the checks not already done on append)."""
    from ase.data import chemical_symbols

    problems = []
    for what, value in (("energy", np.asarray(frame.energy)), ("forces", frame.forces),
                        ("stress", frame.stress)):
        if value is not None and not np.all(np.isfinite(value)):
            problems.append(f"{what} NaN or inf")
    if allowed is not None:
        unknown = sorted(set(frame.numbers.tolist()) - allowed)
        if unknown:
            problems.append("element(s) not allowed: " + ", ".join(chemical_symbols[z] for z in unknown))
    return problems


def _frame_atoms(frame: Frame):
    """A Frame as labelled ASE ``Atoms`` (for validation)."""
    from ..data.frames import Labels, labelled_atoms

    return labelled_atoms(_to_atoms(frame), Labels(frame.energy, frame.forces, frame.stress))


def _to_atoms(frame: Frame):
    from ase import Atoms

    return Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)


#: Neighbour pairs a FrameBatcher keeps (≈ 11 bytes each: 550 MB); see FrameBatcher.
MAX_CACHED_EDGES = 50_000_000


class FrameBatcher:
    """Builds (Batch, Edges, Targets) for any subset of ``frames``, caching neighbour lists.

    Args:
        frames: the labelled frames.
        cutoff: neighbour-list cutoff, Å (the model's ``cutoff``).
        dtype / device: of the float tensors handed to the model.
        max_cached_edges: neighbour pairs kept in memory (11 bytes each: int32 pair, int8 shift);
            frames beyond it get their list recomputed each time they are used.
    """

    def __init__(self, frames: Sequence[Frame], cutoff: float, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", max_cached_edges: int = MAX_CACHED_EDGES):
        self.frames = list(frames)
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self.device = torch.device(device)
        self.max_cached_edges = int(max_cached_edges)
        self._edges: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached = 0

    def __len__(self) -> int:
        return len(self.frames)

    def _frame_edges(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(2, E) pairs within the frame and (E, 3) integer cell shifts of frame ``i``."""
        if i in self._edges:
            return self._edges[i]
        frame = self.frames[i]
        single = Batch.from_atoms([_to_atoms(frame)], dtype=torch.float64)
        edges = neighbor_list(single, self.cutoff)
        shifts = edges.cell_shifts.numpy()
        compact = (edges.index.numpy().astype(np.int32),
                   shifts.astype(np.int8) if np.abs(shifts).max(initial=0) < 128 else shifts)
        if self._cached + edges.n_edges <= self.max_cached_edges:
            self._edges[i] = compact
            self._cached += edges.n_edges
        return compact

    def batch(self, indices: Sequence[int]) -> tuple[Batch, Edges, Targets]:
        """The frames ``indices`` (in this order) as one batch with its edges and labels."""
        indices = [int(i) for i in indices]
        frames = [self.frames[i] for i in indices]
        counts = np.array([f.n_atoms for f in frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        index_parts, shift_parts = [], []
        for i, offset in zip(indices, offsets):
            index, shifts = self._frame_edges(i)
            index_parts.append(index.astype(np.int64) + offset)
            shift_parts.append(shifts)
        index = np.concatenate(index_parts, axis=1) if index_parts else np.zeros((2, 0), np.int64)
        shifts = np.concatenate(shift_parts) if shift_parts else np.zeros((0, 3))
        dev, dt = self.device, self.dtype
        batch = Batch(
            positions=torch.tensor(np.concatenate([f.positions for f in frames]), dtype=dt, device=dev),
            numbers=torch.tensor(np.concatenate([f.numbers for f in frames]), dtype=torch.long, device=dev),
            cell=torch.tensor(np.stack([f.cell for f in frames]), dtype=dt, device=dev),
            pbc=torch.tensor(np.stack([f.pbc for f in frames]), dtype=torch.bool, device=dev),
            system_idx=torch.repeat_interleave(torch.arange(len(frames), device=dev),
                                               torch.tensor(counts, device=dev)),
        )
        edges = Edges(index=torch.from_numpy(index).to(dev),
                      cell_shifts=torch.tensor(shifts, dtype=dt, device=dev))
        zeros3 = np.zeros((3, 3))
        forces = np.concatenate([f.forces if f.forces is not None else np.zeros((f.n_atoms, 3))
                                 for f in frames])
        virial = np.stack([-f.volume * f.stress if f.stress is not None else zeros3 for f in frames])
        targets = Targets(
            # float64 whatever the model's dtype: DFT totals (hundreds of eV) in float32 round to
            # ~1e-5 eV, and the model's totals are float64 too (ACNN.atomic_energies)
            energy=torch.tensor([f.energy for f in frames], dtype=torch.float64, device=dev),
            forces=torch.tensor(forces, dtype=dt, device=dev),
            virial=torch.tensor(virial, dtype=dt, device=dev),
            has_forces=torch.tensor([f.forces is not None for f in frames], device=dev),
            has_virial=torch.tensor([f.stress is not None for f in frames], device=dev),
            n_atoms=torch.tensor(counts, dtype=dt, device=dev),
            system_idx=batch.system_idx,
            weight=torch.tensor([f.weight for f in frames], dtype=dt, device=dev),
        )
        return batch, edges, targets


def collapsed_weights(frames: Sequence[Frame], max_force: float) -> np.ndarray:
    """(F,) loss weights min(1, (max_force / F_max)²), F_max the frame's largest force component
    (eV/Å): a collapsed cell whose forces are far above ``max_force`` adds to the loss of Eq. 16
    about what a frame at ``max_force`` would, instead of dominating it (frames without forces: 1)."""
    largest = np.array([np.abs(f.forces).max(initial=0.0) if f.forces is not None else 0.0
                        for f in frames])
    collapsed = largest > max_force
    return np.where(collapsed, (max_force / np.where(collapsed, largest, 1.0)) ** 2, 1.0)
