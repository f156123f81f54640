"""Relax many structures at a pressure with continuous batching.

:func:`iter_relax` keeps up to ``batch_size`` structures in one :class:`~acnn_mpi.relax.optimizer.BFGSState`;
each step is ONE batched evaluation of all of them. A structure that converges, hits the step limit
or turns unphysical leaves the batch at once and the next waiting structure takes its place, so the
batch stays full until the input runs out. Results come out as they finish (a generator, for
streaming into shards); :func:`relax_structures` collects them in input order.

Example::

    from acnn_mpi.model.lennard_jones import LennardJones
    results = relax_structures(structures, LennardJones(), pressure=10.0)   # GPa
    for r in results:
        print(r.structure_id, r.status, r.enthalpy / len(r.atoms))
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..state import Batch
from ..units import ev_per_a3_to_gpa, gpa_to_ev_per_a3
from . import optimizer as opt
from .evaluators import as_evaluator
from .status import (CONVERGED, FAILED, NOT_CONVERGED, UNPHYSICAL, Convergence, PhysicalLimits,
                     converged, find_unphysical, max_force, stress_residual_gpa)

log = logging.getLogger(__name__)


@dataclass
class RelaxResult:
    """One structure's relaxation.

    Attributes:
        atoms: the final structure (ASE ``Atoms``; ``info`` keeps the input's entries plus the
            results under the names of :mod:`acnn_mpi.keys`). For ``not_converged`` it is the
            lowest-enthalpy geometry reached; for ``unphysical`` the geometry that was flagged (or
            the last finite one).
        energy: eV; enthalpy: E + PV, eV; volume: Å³.
        steps: optimizer steps (model evaluations after the first).
        status: ``converged``, ``not_converged``, ``unphysical`` or ``failed``; reason: why (else "").
        structure_id: the input's id (``atoms.info['structure_id']`` if given, else its position).
        max_force: largest |F| on an atom, eV/Å.
        pressure_residual: max |σ_ij + P δ_ij|, GPa (how far the stress is from −P I).
        pressure: −tr(σ)/3, GPa.
        pressure_target: the relaxation pressure P, GPa.
    """

    atoms: object
    energy: float
    enthalpy: float
    volume: float
    steps: int
    status: str
    reason: str
    structure_id: int
    max_force: float
    pressure_residual: float
    pressure: float = 0.0
    pressure_target: float = 0.0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    @property
    def enthalpy_per_atom(self) -> float:
        return self.enthalpy / len(self.atoms)


def _structure_id(atoms, position: int) -> int:
    info = getattr(atoms, "info", {}) or {}
    for key in ("structure_id", "id"):
        if key in info:
            try:
                return int(info[key])
            except (TypeError, ValueError):
                pass
    return position


def iter_relax(
    structures: Iterable,
    model,
    pressure: float = 0.0,
    *,
    batch_size: int = 64,
    max_atoms: Optional[int] = None,
    fmax: float = 1e-3,
    dh_tol: float = 1e-6,
    stress_tol: float = 0.05,
    max_steps: int = 1000,
    min_distances=None,
    min_distance_fraction: float = 0.5,
    volume_window: Optional[Sequence[float]] = (0.5, 200.0),
    energy_floor: Optional[float] = None,
    maxstep: float = 0.2,
    alpha: float = 70.0,
    skin: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float64,
    callback: Optional[Callable[[RelaxResult], None]] = None,
    log_every: float = 0.0,
) -> Iterator[RelaxResult]:
    """Relax ``structures`` at ``pressure`` (GPa); yield a :class:`RelaxResult` for each as it
    finishes (completion order). See :func:`relax_structures` for the arguments."""
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} must be >= 1")
    criteria = Convergence(fmax=fmax, dh_tol=dh_tol, stress_tol=stress_tol, max_steps=max_steps)
    limits = PhysicalLimits(min_distances=min_distances, min_distance_fraction=min_distance_fraction,
                            volume_window=volume_window, energy_floor=energy_floor)
    evaluator = as_evaluator(model, device=device)
    if device is None:
        device = getattr(evaluator, "device", None) or "cpu"
    pressure_ev = gpa_to_ev_per_a3(float(pressure))
    source = iter(enumerate(structures))
    infos: dict[int, tuple[int, dict]] = {}  # running index -> (structure id, input info)
    state: Optional[opt.BFGSState] = None
    exhausted = False
    done = 0
    started = last_log = time.monotonic()

    def take(room_structures: int, room_atoms: Optional[int]):
        nonlocal exhausted
        new = []
        atoms_taken = 0
        while not exhausted and len(new) < room_structures:
            if room_atoms is not None and new and atoms_taken >= room_atoms:
                break
            try:
                position, atoms = next(source)
            except StopIteration:
                exhausted = True
                break
            infos[position] = (_structure_id(atoms, position), dict(getattr(atoms, "info", {}) or {}))
            new.append((position, atoms))
            atoms_taken += len(atoms)
        return new

    while True:
        active = 0 if state is None else state.n_systems
        active_atoms = 0 if state is None else int(state.n_atoms.sum())
        room = batch_size - active
        room_atoms = None if max_atoms is None else max_atoms - active_atoms
        if room > 0 and (room_atoms is None or room_atoms > 0 or active == 0):
            new = take(room, room_atoms)
            if new:
                batch = Batch.from_atoms([a for _, a in new], device=device, dtype=dtype)
                fresh = opt.init(batch, pressure_ev, ids=torch.tensor([p for p, _ in new]),
                                 maxstep=maxstep, alpha=alpha, skin=skin)
                state = opt.concatenate([state, fresh])
        if state is None or state.n_systems == 0:
            break
        state, info = opt.step(state, evaluator)
        finished, statuses, reasons = _classify(state, info, criteria, limits)
        if finished:
            results = _results(state, finished, statuses, reasons, infos, float(pressure))
            keep = [b for b in range(state.n_systems) if b not in set(finished)]
            state = state.select(keep) if keep else None
            for result in results:
                done += 1
                if callback is not None:
                    callback(result)
                yield result
        if log_every and time.monotonic() - last_log > log_every:
            last_log = time.monotonic()
            rate = done / max(last_log - started, 1e-9)
            log.info("relaxed %d structure(s), %d in the batch, %.2f structures/s", done,
                     0 if state is None else state.n_systems, rate)


def _classify(state: opt.BFGSState, info: opt.StepInfo, criteria: Convergence, limits: PhysicalLimits,
              distance_every: int = 10):
    """Indices of structures that finish now, with status and reason.

    Non-finite numbers are caught at every evaluation; volume and energy floor at every accepted
    geometry; close contacts every ``distance_every`` evaluations and whenever a structure is about
    to finish (so every result has passed every check).
    """
    ev = info.evaluation
    statuses: dict[int, str] = {}
    reasons: dict[int, str] = {}
    errors = getattr(ev, "errors", None)
    if errors:
        for b, message in enumerate(errors):
            if message is not None:
                statuses[b], reasons[b] = FAILED, message
    n = state.n_systems
    finite = torch.isfinite(ev.energy) & torch.isfinite(ev.stress).flatten(1).all(1)
    bad_atoms = torch.zeros(n, dtype=torch.long, device=finite.device).index_add(
        0, state.system_idx, (~torch.isfinite(ev.forces).all(1)).long())
    finite &= bad_atoms == 0
    for b in torch.nonzero(~finite).flatten().tolist():
        if b not in statuses:
            what = "energy" if not bool(torch.isfinite(ev.energy[b])) else (
                "stress" if not bool(torch.isfinite(ev.stress[b]).all()) else "forces")
            statuses[b], reasons[b] = UNPHYSICAL, f"non-finite {what} (step {int(state.steps[b])})"
    ok = converged(state.forces, state.residual, state.enthalpy_change, state.n_atoms, state.system_idx, criteria)
    limit = state.steps >= criteria.max_steps
    finishing = ok | limit
    check = (info.accepted | finishing) & finite
    periodic = (state.n_evaluations % max(int(distance_every), 1)) == 1
    found = find_unphysical(state.accepted_batch(), state.energy, state.forces, state.stress, limits,
                            edges=getattr(ev, "edges", None), edges_cutoff=getattr(ev, "edges_cutoff", 0.0),
                            check=check, check_distances=periodic | finishing)
    for b, reason in enumerate(found):
        if reason is not None and b not in statuses:
            statuses[b], reasons[b] = UNPHYSICAL, f"{reason} (step {int(state.steps[b])})"
    for b in torch.nonzero(finishing).flatten().tolist():
        if b not in statuses:
            if bool(ok[b]):
                statuses[b], reasons[b] = CONVERGED, ""
            else:
                statuses[b], reasons[b] = NOT_CONVERGED, f"step limit {criteria.max_steps} reached"
    finished = sorted(statuses)
    return finished, statuses, reasons


def _results(state: opt.BFGSState, finished, statuses, reasons, infos, pressure_gpa) -> list[RelaxResult]:
    from .. import keys

    index = torch.tensor(finished, dtype=torch.long, device=state.n_atoms.device)
    sub = state.select(index)
    atoms_list = sub.accepted_batch().to_atoms()
    fmax = max_force(sub.forces, sub.system_idx, sub.n_systems).tolist()
    residual = stress_residual_gpa(sub.residual).tolist()
    pressure = (-ev_per_a3_to_gpa(torch.diagonal(sub.stress, dim1=1, dim2=2).sum(1) / 3.0)).tolist()
    volume = torch.linalg.det(sub.cell).abs().tolist()
    energy, enthalpy, steps = sub.energy.tolist(), sub.enthalpy.tolist(), sub.steps.tolist()
    positions = sub.ids.tolist()
    out = []
    for k, b in enumerate(finished):
        structure_id, info = infos.pop(positions[k])
        atoms = atoms_list[k]
        atoms.info.update(info)
        atoms.info.update({keys.STRUCTURE_ID: structure_id, keys.ENERGY: energy[k],
                           keys.ENTHALPY: enthalpy[k], keys.STATUS: statuses[b],
                           "pressure_gpa": pressure_gpa})
        if statuses[b] == FAILED or not np.isfinite(enthalpy[k]):
            enthalpy_k = float("nan") if not np.isfinite(enthalpy[k]) else enthalpy[k]
        else:
            enthalpy_k = enthalpy[k]
        out.append(RelaxResult(
            atoms=atoms, energy=float(energy[k]), enthalpy=float(enthalpy_k), volume=float(volume[k]),
            steps=int(steps[k]), status=statuses[b], reason=reasons[b], structure_id=int(structure_id),
            max_force=float(fmax[k]), pressure_residual=float(residual[k]), pressure=float(pressure[k]),
            pressure_target=pressure_gpa,
            extra={"rejected_steps": int(sub.n_rejected[k]), "input_position": positions[k]},
        ))
    return out


def relax_structures(
    structures: Iterable,
    model,
    pressure: float = 0.0,
    *,
    batch_size: int = 64,
    max_atoms: Optional[int] = None,
    fmax: float = 1e-3,
    dh_tol: float = 1e-6,
    stress_tol: float = 0.05,
    max_steps: int = 1000,
    min_distances=None,
    min_distance_fraction: float = 0.5,
    volume_window: Optional[Sequence[float]] = (0.5, 200.0),
    energy_floor: Optional[float] = None,
    maxstep: float = 0.2,
    alpha: float = 70.0,
    skin: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float64,
    callback: Optional[Callable[[RelaxResult], None]] = None,
    log_every: float = 0.0,
) -> list[RelaxResult]:
    """Relax positions and cells of ``structures`` at ``pressure`` by batched BFGS.

    Args:
        structures: ASE ``Atoms`` (a list or any iterator, read lazily as room frees up).
        model: a torch atomic-energy model (ACNN, Lennard-Jones; one batched call per step) or an
            ASE calculator (one structure per call), see :mod:`acnn_mpi.relax.evaluators`.
        pressure: GPa; the relaxation minimizes H = E + PV.
        batch_size: structures relaxed together; max_atoms: optional cap on atoms in the batch.
        fmax (eV/Å), dh_tol (eV/atom), stress_tol (GPa, max |σ + P I|), max_steps: convergence.
        min_distances, min_distance_fraction, volume_window (Å³/atom), energy_floor (eV/atom):
            unphysical limits (see :class:`~acnn_mpi.relax.status.PhysicalLimits`).
        maxstep: trust-radius cap per coordinate row, Å; alpha: initial Hessian, eV/Å².
        skin: Verlet skin of the neighbour lists, Å (0: rebuild every step); ignored for ASE
            calculators.
        device, dtype: where and in what float type the optimizer works (the model keeps its own).
        callback: called with each :class:`RelaxResult` as it finishes.
        log_every: seconds between progress lines (0: none).

    Returns:
        One :class:`RelaxResult` per input structure, in input order.
    """
    results = list(iter_relax(
        structures, model, pressure, batch_size=batch_size, max_atoms=max_atoms, fmax=fmax,
        dh_tol=dh_tol, stress_tol=stress_tol, max_steps=max_steps, min_distances=min_distances,
        min_distance_fraction=min_distance_fraction, volume_window=volume_window,
        energy_floor=energy_floor, maxstep=maxstep, alpha=alpha, skin=skin, device=device, dtype=dtype,
        callback=callback, log_every=log_every))
    results.sort(key=lambda r: r.extra["input_position"])
    return results


_ = itertools
