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

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch

from ..state import Batch
from ..units import ev_per_a3_to_gpa, gpa_to_ev_per_a3
from . import optimizer as opt
from .evaluators import as_evaluator
from .status import (CONVERGED, FAILED, NOT_CONVERGED, UNPHYSICAL, Convergence, PhysicalLimits,
                     converged, find_unphysical, max_force, reference_energies_of,
                     stress_residual_gpa)

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


class BatchRelaxer:
    """The continuous-batching engine: structures wait in a queue, up to ``batch_size`` relax
    together, and each :meth:`step` is one batched evaluation that returns the structures that
    finished. Structures can be added at any time (:meth:`submit`), so an MPI worker keeps its
    batch full while it asks the root for more work. See :func:`relax_structures` for the options.
    """

    def __init__(self, model, pressure: float = 0.0, *, batch_size: int = 64, max_atoms: Optional[int] = None,
                 fmax: float = 1e-3, dh_tol: float = 1e-6, stress_tol: float = 0.05, max_steps: int = 1000,
                 min_distances=None, min_distance_fraction: float = 0.5,
                 volume_window: Optional[Sequence[float]] = (0.5, 200.0), energy_floor: Optional[float] = None,
                 maxstep: float = 0.2, alpha: float = 70.0, skin: float = 1.0, device=None,
                 dtype: torch.dtype = torch.float64, distance_every: int = 10, ase_compatible: bool = True,
                 uphill_tolerance: float = 0.0):
        if batch_size < 1:
            raise ValueError(f"batch_size = {batch_size} must be >= 1")
        if max_atoms is not None and max_atoms < 1:
            raise ValueError(f"max_atoms = {max_atoms} must be >= 1")
        self.criteria = Convergence(fmax=fmax, dh_tol=dh_tol, stress_tol=stress_tol, max_steps=max_steps)
        self.limits = PhysicalLimits(min_distances=min_distances, min_distance_fraction=min_distance_fraction,
                                     volume_window=volume_window, energy_floor=energy_floor,
                                     energy_references=reference_energies_of(model))
        self.evaluator = as_evaluator(model, device=device)
        self.device = device if device is not None else (getattr(self.evaluator, "device", None) or "cpu")
        self.dtype = dtype
        self.pressure = float(pressure)
        self.pressure_ev = gpa_to_ev_per_a3(self.pressure)
        self.batch_size, self.max_atoms = int(batch_size), max_atoms
        self.maxstep, self.alpha, self.skin = float(maxstep), float(alpha), float(skin)
        self.distance_every = int(distance_every)
        self.ase_compatible = bool(ase_compatible)
        self.uphill_tolerance = float(uphill_tolerance)
        self.state: Optional[opt.BFGSState] = None
        self._queue: deque = deque()
        self._source: Optional[Iterator] = None
        self._infos: dict[int, tuple[int, dict]] = {}
        self._position = 0
        self.n_steps = 0  # batched evaluations so far
        self.n_done = 0

    # -- feeding ----------------------------------------------------------------------------------
    def submit(self, structures: Iterable) -> None:
        """Queue structures (ASE ``Atoms``; ids from ``info['structure_id']``, else their order)."""
        for atoms in structures:
            self._queue.append((self._position, atoms))
            self._position += 1

    def feed_from(self, structures: Iterable) -> None:
        """Read structures lazily from an iterable as room frees up (after the queue)."""
        self._source = iter(structures)

    @property
    def n_active(self) -> int:
        return 0 if self.state is None else self.state.n_systems

    @property
    def n_queued(self) -> int:
        return len(self._queue)

    @property
    def has_room(self) -> bool:
        """Whether the batch could take another structure now."""
        if self.n_active >= self.batch_size:
            return False
        return self.max_atoms is None or self.n_active == 0 or int(self.state.n_atoms.sum()) < self.max_atoms

    def _next(self):
        if self._queue:
            return self._queue.popleft()
        if self._source is not None:
            try:
                atoms = next(self._source)
            except StopIteration:
                self._source = None
                return None
            item = (self._position, atoms)
            self._position += 1
            return item
        return None

    def fill(self) -> None:
        """Move queued structures into the batch while it has room (no model call)."""
        new = []
        active_atoms = 0 if self.state is None else int(self.state.n_atoms.sum())
        while self.n_active + len(new) < self.batch_size:
            if self.max_atoms is not None and (self.n_active + len(new)) > 0 and active_atoms >= self.max_atoms:
                break
            item = self._next()
            if item is None:
                break
            position, atoms = item
            self._infos[position] = (_structure_id(atoms, position), dict(getattr(atoms, "info", {}) or {}))
            new.append(item)
            active_atoms += len(atoms)
        if new:
            batch = Batch.from_atoms([a for _, a in new], device=self.device, dtype=self.dtype)
            fresh = opt.init(batch, self.pressure_ev, ids=torch.tensor([p for p, _ in new]),
                             maxstep=self.maxstep, alpha=self.alpha, skin=self.skin,
                             ase_compatible=self.ase_compatible)
            self.state = opt.concatenate([self.state, fresh])

    # -- running ----------------------------------------------------------------------------------
    def step(self) -> list[RelaxResult]:
        """Fill the batch from the queue/source, make one batched optimizer step, and return the
        structures that finished (empty list when nothing is left to do)."""
        self.fill()
        if self.state is None or self.state.n_systems == 0:
            return []
        self.state, info = opt.step(self.state, self.evaluator, self.uphill_tolerance)
        self.n_steps += 1
        finished, statuses, reasons = _classify(self.state, info, self.criteria, self.limits, self.distance_every)
        if not finished:
            return []
        results = _results(self.state, finished, statuses, reasons, self._infos, self.pressure)
        gone = set(finished)
        keep = [b for b in range(self.state.n_systems) if b not in gone]
        self.state = self.state.select(keep) if keep else None
        self.n_done += len(results)
        return results

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing in the batch, no lazy source left."""
        return self.n_active == 0 and not self._queue and self._source is None

    def run(self) -> Iterator[RelaxResult]:
        """Step until everything submitted (and the lazy source) is done; yield results."""
        while True:
            results = self.step()
            yield from results
            if self.idle:
                return


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
    ase_compatible: bool = True,
    uphill_tolerance: float = 0.0,
    device=None,
    dtype: torch.dtype = torch.float64,
    callback: Optional[Callable[[RelaxResult], None]] = None,
    log_every: float = 0.0,
) -> Iterator[RelaxResult]:
    """Relax ``structures`` at ``pressure`` (GPa); yield a :class:`RelaxResult` for each as it
    finishes (completion order). ``structures`` is read lazily. See :func:`relax_structures`."""
    relaxer = BatchRelaxer(model, pressure, batch_size=batch_size, max_atoms=max_atoms, fmax=fmax,
                           dh_tol=dh_tol, stress_tol=stress_tol, max_steps=max_steps,
                           min_distances=min_distances, min_distance_fraction=min_distance_fraction,
                           volume_window=volume_window, energy_floor=energy_floor, maxstep=maxstep,
                           alpha=alpha, skin=skin, ase_compatible=ase_compatible,
                           uphill_tolerance=uphill_tolerance, device=device, dtype=dtype)
    relaxer.feed_from(structures)
    started = last_log = time.monotonic()
    for result in relaxer.run():
        if callback is not None:
            callback(result)
        yield result
        if log_every and time.monotonic() - last_log > log_every:
            last_log = time.monotonic()
            log.info("relaxed %d structure(s), %d in the batch, %.2f structures/s", relaxer.n_done,
                     relaxer.n_active, relaxer.n_done / max(last_log - started, 1e-9))


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
        out.append(RelaxResult(
            atoms=atoms, energy=float(energy[k]), enthalpy=float(enthalpy[k]), volume=float(volume[k]),
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
    ase_compatible: bool = True,
    uphill_tolerance: float = 0.0,
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
        min_distances, min_distance_fraction, volume_window (Å³/atom), energy_floor (eV/atom,
            relative to the model's per-element reference energies, 0 for models without them):
            unphysical limits (see :class:`~acnn_mpi.relax.status.PhysicalLimits`).
        maxstep: trust-radius cap per coordinate row, Å; alpha: initial Hessian, eV/Å².
        skin: Verlet skin of the neighbour lists, Å (0: rebuild every step); ignored for ASE
            calculators.
        ase_compatible: follow ASE's BFGS through negative curvature (its Hessian update and
            |eigenvalue| steps, for the structures that meet it); False: skip such updates and
            keep the cheaper inverse-Hessian step throughout.
        uphill_tolerance: eV/atom a step may raise the enthalpy and still be accepted (beyond
            rounding noise); larger rises are rejected and the trust radius halves.
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
        energy_floor=energy_floor, maxstep=maxstep, alpha=alpha, skin=skin, ase_compatible=ase_compatible,
        uphill_tolerance=uphill_tolerance, device=device, dtype=dtype,
        callback=callback, log_every=log_every))
    results.sort(key=lambda r: r.extra["input_position"])
    return results


