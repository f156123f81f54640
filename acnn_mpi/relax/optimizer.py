"""Batched BFGS over positions and cell (Fréchet cell filter), torch-sim style.

A :class:`BFGSState` holds B structures, each with its own optimizer state as padded batched
tensors; :func:`init` builds it (no model call), :func:`step` makes ONE evaluator call for the whole
batch and advances every structure. :func:`concatenate` and :meth:`BFGSState.select` let structures
join and leave between steps (continuous batching, see :mod:`acnn_mpi.relax.runner`).

Coordinates per structure (see :mod:`acnn_mpi.relax.cell`): R = 3 + n_max rows of 3, rows 0-2 the
cell's log-deformation X = c·log F, rows 3.. the atoms in the reference frame; structures with fewer
atoms are padded with rows that stay zero (zero gradient, zero inverse-Hessian block).

The method is BFGS on the inverse Hessian (Nocedal & Wright, Alg. 6.1) started, as ASE's BFGS, from
H₀ = I/α with α = 70 eV/Å² and the step scaled so that no row moves more than the trust radius
(``maxstep``, 0.2 Å as ASE). Safeguards: a trial step that raises the enthalpy by more than the
back end's rounding noise is rejected (the structure stays where it was and its trust radius
halves; the secant pair still updates the inverse Hessian), and updates violating the curvature
condition sᵀy > 0 are skipped, so the inverse Hessian stays positive definite and every step is a
descent direction. O(D²) per structure and step (D = 3R), no eigendecomposition.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Optional, Sequence

import torch

from ..neighbors import Edges
from ..state import Batch
from . import cell as cellf
from . import verlet


@dataclass
class BFGSState:
    """B structures under relaxation.

    Per atom (N total): ``numbers``, ``system_idx``, ``positions`` (accepted, Cartesian Å),
    ``forces`` (accepted, eV/Å). Per structure (B): ``pbc``, ``n_atoms``, ``reference_cell`` C₀,
    ``cell_factor`` c, ``pressure`` (eV/Å³), ``cell`` (accepted), ``energy``, ``enthalpy``,
    ``stress``, ``residual`` (σ + P I), ``enthalpy_change`` (last accepted step; inf before one),
    ``trust`` (Å), ``fresh`` (not yet evaluated), ``n_evaluations``, ``n_rejected``, ``ids``.
    Padded: ``x`` / ``x_trial`` / ``grad`` (B, R, 3) and ``inv_hessian`` (B, 3R, 3R).
    ASE-compatible mode: also ASE's Hessian ``hessian`` (B, 3R, 3R; α I in the padding) and
    ``indefinite`` (B,): the structure had a negative-curvature update, so its steps come from the
    eigendecomposition of ``hessian`` (|eigenvalues|, as ASE) instead of ``inv_hessian``.
    Verlet list (``skin`` > 0 and a model with a cutoff): ``edges`` within cutoff + skin, built at
    ``nl_positions`` / ``nl_cell``; ``nl_built`` false until a structure's first list.
    """

    numbers: torch.Tensor
    system_idx: torch.Tensor
    positions: torch.Tensor
    forces: torch.Tensor
    pbc: torch.Tensor
    n_atoms: torch.Tensor
    reference_cell: torch.Tensor
    cell_factor: torch.Tensor
    pressure: torch.Tensor
    cell: torch.Tensor
    energy: torch.Tensor
    enthalpy: torch.Tensor
    stress: torch.Tensor
    residual: torch.Tensor
    enthalpy_change: torch.Tensor
    trust: torch.Tensor
    fresh: torch.Tensor
    n_evaluations: torch.Tensor
    n_rejected: torch.Tensor
    ids: torch.Tensor
    x: torch.Tensor
    x_trial: torch.Tensor
    grad: torch.Tensor
    inv_hessian: torch.Tensor
    hessian: Optional[torch.Tensor] = None
    indefinite: Optional[torch.Tensor] = None
    nl_positions: Optional[torch.Tensor] = None
    nl_cell: Optional[torch.Tensor] = None
    nl_built: Optional[torch.Tensor] = None
    edges: Optional[Edges] = None
    maxstep: float = 0.2
    alpha: float = 70.0
    skin: float = 0.0

    # ---------------------------------------------------------------------------------------------
    @property
    def n_systems(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def rows(self) -> int:
        return int(self.x.shape[1])

    @property
    def steps(self) -> torch.Tensor:
        """(B,) optimizer steps taken (evaluations after the first)."""
        return (self.n_evaluations - 1).clamp(min=0)

    def atom_offsets(self) -> torch.Tensor:
        offsets = torch.zeros(self.n_systems + 1, dtype=torch.long, device=self.n_atoms.device)
        offsets[1:] = torch.cumsum(self.n_atoms, 0)
        return offsets

    def atom_rows(self) -> torch.Tensor:
        """(N,) flat row index (into B·R rows) of each atom."""
        offsets = self.atom_offsets()
        local = torch.arange(self.system_idx.shape[0], device=self.system_idx.device) - offsets[self.system_idx]
        return self.system_idx * self.rows + 3 + local

    def accepted_batch(self) -> Batch:
        """The structures at their accepted (lowest-enthalpy) geometry."""
        return Batch(self.positions, self.numbers, self.cell, self.pbc, self.system_idx)

    def trial_batch(self) -> Batch:
        """The structures at the geometry the next evaluation will see."""
        positions, cell, _ = self._geometry(self.x_trial)
        return Batch(positions, self.numbers, cell, self.pbc, self.system_idx)

    def _geometry(self, x: torch.Tensor):
        r0 = x.reshape(-1, 3).index_select(0, self.atom_rows())
        return cellf.geometry(x[:, :3], r0, self.reference_cell, self.cell_factor, self.system_idx)

    def select(self, systems: Sequence[int] | torch.Tensor) -> "BFGSState":
        """A state holding the given structures (order kept), padding trimmed to the largest."""
        device = self.n_atoms.device
        systems = torch.as_tensor(systems, dtype=torch.long, device=device)
        keep_atoms = torch.zeros(self.n_systems, dtype=torch.bool, device=device)
        keep_atoms[systems] = True
        order_ok = bool((systems[1:] > systems[:-1]).all()) if len(systems) > 1 else True
        if not order_ok:
            raise ValueError("select() keeps structures in their order: give increasing indices")
        atom_mask = keep_atoms[self.system_idx]
        n_atoms = self.n_atoms[systems]
        rows = 3 + (int(n_atoms.max()) if len(systems) else 0)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "edges":
                values[f.name] = verlet.select_edges(value, atom_mask)
            elif f.name in ("numbers", "positions", "forces", "nl_positions"):
                values[f.name] = value[atom_mask]
            elif f.name == "system_idx":
                values[f.name] = torch.repeat_interleave(torch.arange(len(systems), device=device), n_atoms)
            elif f.name in ("x", "x_trial", "grad"):
                values[f.name] = value[systems, :rows]
            elif f.name in ("inv_hessian", "hessian"):
                values[f.name] = None if value is None else value[systems, : 3 * rows, : 3 * rows]
            elif isinstance(value, torch.Tensor):
                values[f.name] = value[systems]
            else:
                values[f.name] = value
        return BFGSState(**values)


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[1] == rows:
        return t
    out = torch.zeros(t.shape[0], rows, 3, dtype=t.dtype, device=t.device)
    out[:, : t.shape[1]] = t
    return out


def _pad_square(t: torch.Tensor, dim: int, diagonal: float = 0.0) -> torch.Tensor:
    if t.shape[1] == dim:
        return t
    out = torch.zeros(t.shape[0], dim, dim, dtype=t.dtype, device=t.device)
    if diagonal:
        out[:, range(dim), range(dim)] = diagonal
    out[:, : t.shape[1], : t.shape[2]] = t
    return out


def concatenate(states: Sequence[Optional[BFGSState]]) -> Optional[BFGSState]:
    """One state with the structures of ``states`` in order (None and empty states skipped)."""
    states = [s for s in states if s is not None and s.n_systems > 0]
    if not states:
        return None
    if len(states) == 1:
        return states[0]
    rows = max(s.rows for s in states)
    values = {}
    for f in fields(BFGSState):
        items = [getattr(s, f.name) for s in states]
        if f.name == "edges":
            values[f.name] = verlet.concatenate_edges([(s.edges, int(s.positions.shape[0])) for s in states])
        elif f.name == "system_idx":
            shift, parts = 0, []
            for s in states:
                parts.append(s.system_idx + shift)
                shift += s.n_systems
            values[f.name] = torch.cat(parts)
        elif f.name in ("x", "x_trial", "grad"):
            values[f.name] = torch.cat([_pad_rows(t, rows) for t in items])
        elif f.name == "inv_hessian":
            values[f.name] = torch.cat([_pad_square(t, 3 * rows) for t in items])
        elif f.name == "hessian":
            if any(t is None for t in items):
                values[f.name] = None
            else:
                values[f.name] = torch.cat([_pad_square(t, 3 * rows, st.alpha) for t, st in zip(items, states)])
        elif f.name == "indefinite":
            values[f.name] = None if any(t is None for t in items) else torch.cat(items)
        elif isinstance(items[0], torch.Tensor):
            values[f.name] = torch.cat(items)
        else:
            values[f.name] = items[0]
    return BFGSState(**values)


def _row_valid(n_atoms: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, R) which padded rows belong to a structure (3 cell rows + its atoms)."""
    return torch.arange(rows, device=n_atoms.device)[None, :] < (3 + n_atoms)[:, None]


def init(
    batch: Batch,
    pressure: float | torch.Tensor = 0.0,
    *,
    ids: Optional[torch.Tensor] = None,
    maxstep: float = 0.2,
    alpha: float = 70.0,
    exp_cell_factor: Optional[float | torch.Tensor] = None,
    skin: float = 0.0,
    ase_compatible: bool = True,
) -> BFGSState:
    """Optimizer state for the structures of ``batch`` (not yet evaluated: the first
    :func:`step` evaluates them, in the same model call as the rest of the batch).

    Args:
        batch: the starting structures (float type and device of the optimizer).
        pressure: eV/Å³, scalar or (B,).
        ids: (B,) int64 labels carried along (default 0..B-1).
        maxstep: trust radius cap, Å (per row of the coordinates).
        alpha: initial Hessian α I, eV/Å².
        exp_cell_factor: c of the cell coordinates; default the number of atoms (as ASE).
        skin: Verlet skin, Å (0: a new neighbour list at every step).
        ase_compatible: also keep ASE's Hessian so that after a negative-curvature update the
            steps are ASE's (eigendecomposition, |eigenvalues|): the same path as ASE's BFGS, at
            an O(D³) cost for those structures only. False: skip such updates (cheapest).
    """
    if maxstep <= 0 or alpha <= 0:
        raise ValueError(f"maxstep ({maxstep}) and alpha ({alpha}) must be positive")
    dtype, device = batch.dtype, batch.device
    b = batch.n_systems
    n_atoms = batch.n_atoms
    rows = 3 + int(n_atoms.max())
    kw = dict(dtype=dtype, device=device)
    if exp_cell_factor is None:
        cell_factor = n_atoms.to(dtype)
    else:
        cell_factor = torch.as_tensor(exp_cell_factor, **kw).expand(b).clone()
    pressure_t = torch.as_tensor(pressure, **kw).expand(b).clone()
    x = torch.zeros(b, rows, 3, **kw)
    state = BFGSState(
        numbers=batch.numbers, system_idx=batch.system_idx,
        positions=batch.positions.detach().clone(), forces=torch.zeros_like(batch.positions),
        pbc=batch.pbc, n_atoms=n_atoms, reference_cell=batch.cell.detach().clone(),
        cell_factor=cell_factor, pressure=pressure_t, cell=batch.cell.detach().clone(),
        energy=torch.full((b,), float("nan"), **kw), enthalpy=torch.full((b,), float("inf"), **kw),
        stress=torch.zeros(b, 3, 3, **kw), residual=torch.zeros(b, 3, 3, **kw),
        enthalpy_change=torch.full((b,), float("inf"), **kw),
        trust=torch.full((b,), float(maxstep), **kw),
        fresh=torch.ones(b, dtype=torch.bool, device=device),
        n_evaluations=torch.zeros(b, dtype=torch.long, device=device),
        n_rejected=torch.zeros(b, dtype=torch.long, device=device),
        ids=(torch.arange(b, device=device) if ids is None else torch.as_tensor(ids, dtype=torch.long, device=device)),
        x=x, x_trial=x.clone(), grad=torch.zeros_like(x),
        inv_hessian=torch.zeros(b, 3 * rows, 3 * rows, **kw),
        nl_positions=batch.positions.detach().clone(), nl_cell=batch.cell.detach().clone(),
        nl_built=torch.zeros(b, dtype=torch.bool, device=device),
        maxstep=float(maxstep), alpha=float(alpha), skin=float(skin),
    )
    flat = x.reshape(-1, 3)
    flat[state.atom_rows()] = batch.positions.detach()
    state.x_trial = state.x.clone()
    state.inv_hessian = _initial_inverse_hessian(n_atoms, rows, alpha, dtype, device)
    if ase_compatible:
        state.hessian = alpha * torch.eye(3 * rows, **kw).expand(b, -1, -1).clone()
        state.indefinite = torch.zeros(b, dtype=torch.bool, device=device)
    return state


def _initial_inverse_hessian(n_atoms, rows, alpha, dtype, device) -> torch.Tensor:
    valid = _row_valid(n_atoms, rows).repeat_interleave(3, dim=1).to(dtype)  # (B, 3R)
    return torch.diag_embed(valid / alpha)


@dataclass
class StepInfo:
    """What one :func:`step` saw: the evaluated trial geometries and which were accepted."""

    batch: Batch
    evaluation: object
    accepted: torch.Tensor


def step(state: BFGSState, evaluator: Callable, uphill_tolerance: float = 0.0) -> tuple[BFGSState, StepInfo]:
    """Evaluate every structure's trial geometry in ONE evaluator call, accept or reject each
    step, update each inverse Hessian and propose the next trial geometries.

    A step that raises the enthalpy by more than the back end's rounding noise plus
    ``uphill_tolerance`` (eV/atom) is rejected. Returns the new state (same structures, same order)
    and the :class:`StepInfo` of the call.
    """
    positions, cell, deformation = state._geometry(state.x_trial)
    trial = Batch(positions, state.numbers, cell, state.pbc, state.system_idx)
    edges, nl_positions, nl_cell, nl_built = state.edges, state.nl_positions, state.nl_cell, state.nl_built
    cutoff = getattr(evaluator, "cutoff", None)
    if cutoff and state.skin > 0:
        stale = verlet.stale_structures(trial, nl_positions, nl_cell, nl_built, float(cutoff), state.skin)
        if bool(stale.any()):
            edges = verlet.rebuild(trial, edges, stale, float(cutoff) + state.skin)
            nl_positions = torch.where(stale[state.system_idx][:, None], positions, nl_positions)
            nl_cell = torch.where(stale[:, None, None], cell, nl_cell)
            nl_built = nl_built | stale
        ev = evaluator(trial, edges=edges)
    else:
        ev = evaluator(trial)
    dtype = state.x.dtype
    energy, forces, stress = ev.energy.to(dtype), ev.forces.to(dtype), ev.stress.to(dtype)
    b, rows = state.n_systems, state.rows

    atom_rows_f, cell_rows_f, residual = cellf.filter_forces(
        forces, stress, cell, state.x_trial[:, :3], deformation, state.cell_factor, state.pressure,
        state.system_idx)
    grad = torch.zeros(b * rows, 3, dtype=dtype, device=state.x.device)
    grad[state.atom_rows()] = -atom_rows_f
    grad = grad.reshape(b, rows, 3)
    grad[:, :3] = -cell_rows_f
    volume = torch.linalg.det(cell).abs()
    enthalpy = energy + state.pressure * volume

    finite = torch.isfinite(enthalpy) & torch.isfinite(grad).flatten(1).all(1)
    noise = ev.noise.to(dtype) if getattr(ev, "noise", None) is not None else torch.zeros_like(enthalpy)
    allowed = noise + float(uphill_tolerance) * state.n_atoms.to(dtype)
    accepted = finite & (state.fresh | (enthalpy <= state.enthalpy + allowed))
    old = ~state.fresh & finite

    # inverse-Hessian update with the secant pair of every evaluated (not fresh) structure
    s = (state.x_trial - state.x).reshape(b, -1)
    y = (grad - state.grad).reshape(b, -1)
    y = torch.where(finite[:, None], y, torch.zeros_like(y))
    sy = (s * y).sum(1)
    moved = s.abs().amax(1) >= 1e-7  # as ASE: no update for a negligible step
    good = old & moved & (sy > 1e-12 * torch.linalg.norm(s, dim=1) * torch.linalg.norm(y, dim=1) + 1e-30)
    inv_h = state.inv_hessian
    if bool(good.any()):
        rho = torch.where(good, 1.0 / torch.where(good, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        hy = torch.bmm(inv_h, y[:, :, None]).squeeze(2)
        yhy = (y * hy).sum(1)
        update = (-rho[:, None, None] * (hy[:, :, None] * s[:, None, :] + s[:, :, None] * hy[:, None, :])
                  + (rho * rho * yhy + rho)[:, None, None] * (s[:, :, None] * s[:, None, :]))
        inv_h = inv_h + torch.where(good[:, None, None], update, torch.zeros_like(update))
    hess, indefinite = state.hessian, state.indefinite
    if hess is not None:
        # ASE's update of the Hessian itself, whatever the curvature: H -= yyᵀ/(sᵀ(−y)) + (Hs)(Hs)ᵀ/(sᵀHs)
        hs = torch.bmm(hess, s[:, :, None]).squeeze(2)
        a, shs = -sy, (s * hs).sum(1)
        take = old & moved & (a.abs() > 1e-300) & (shs.abs() > 1e-300)
        if bool(take.any()):
            a_safe = torch.where(take, a, torch.ones_like(a))
            b_safe = torch.where(take, shs, torch.ones_like(shs))
            update = -(y[:, :, None] * y[:, None, :]) / a_safe[:, None, None] \
                - (hs[:, :, None] * hs[:, None, :]) / b_safe[:, None, None]
            hess = hess + torch.where(take[:, None, None], update, torch.zeros_like(update))
            indefinite = indefinite | (take & ~good)

    # accept / reject
    a3 = accepted[:, None, None]
    atom_accept = accepted[state.system_idx][:, None]
    step_length = (state.x_trial - state.x).norm(dim=2).amax(1)
    trust = torch.where(accepted, torch.clamp(2.0 * state.trust, max=state.maxstep),
                        torch.clamp(0.5 * step_length, max=0.5 * state.trust))
    trust = torch.where(state.fresh, torch.full_like(trust, state.maxstep), trust)
    # a trust radius shrunk to nothing: restart from steepest descent with the full radius
    collapsed = trust < 1e-8
    if bool(collapsed.any()):
        fresh_h = _initial_inverse_hessian(state.n_atoms, rows, state.alpha, dtype, state.x.device)
        inv_h = torch.where(collapsed[:, None, None], fresh_h, inv_h)
        if hess is not None:
            eye = state.alpha * torch.eye(hess.shape[1], dtype=dtype, device=hess.device)
            hess = torch.where(collapsed[:, None, None], eye, hess)
            indefinite = indefinite & ~collapsed
        trust = torch.where(collapsed, torch.full_like(trust, state.maxstep), trust)
    new = replace(
        state,
        positions=torch.where(atom_accept, positions, state.positions),
        forces=torch.where(atom_accept, forces, state.forces),
        cell=torch.where(a3, cell, state.cell),
        energy=torch.where(accepted, energy, state.energy),
        enthalpy=torch.where(accepted, enthalpy, state.enthalpy),
        stress=torch.where(a3, stress, state.stress),
        residual=torch.where(a3, residual, state.residual),
        enthalpy_change=torch.where(accepted & ~state.fresh, enthalpy - state.enthalpy,
                                    state.enthalpy_change),
        x=torch.where(a3, state.x_trial, state.x),
        grad=torch.where(a3, grad, state.grad),
        inv_hessian=inv_h,
        hessian=hess,
        indefinite=indefinite,
        trust=trust,
        fresh=state.fresh & ~finite,
        n_evaluations=state.n_evaluations + 1,
        n_rejected=state.n_rejected + (~accepted & ~state.fresh).long(),
        edges=edges, nl_positions=nl_positions, nl_cell=nl_cell, nl_built=nl_built,
    )
    # next trial: quasi-Newton step from the accepted point, capped by the trust radius
    direction = -torch.bmm(new.inv_hessian, new.grad.reshape(b, -1, 1)).reshape(b, rows, 3)
    if new.indefinite is not None and bool(new.indefinite.any()):
        # ASE's step: dr = V (Vᵀ f / |ω|) from the eigendecomposition of its Hessian
        which = torch.nonzero(new.indefinite).flatten()
        omega, vectors = torch.linalg.eigh(new.hessian[which])
        force = -new.grad[which].reshape(len(which), -1, 1)
        projected = torch.bmm(vectors.transpose(1, 2), force) / omega.abs()[:, :, None]
        direction[which] = torch.bmm(vectors, projected).reshape(len(which), rows, 3)
    longest = direction.norm(dim=2).amax(1)
    scale = torch.where(longest > new.trust, new.trust / torch.where(longest > 0, longest, torch.ones_like(longest)),
                        torch.ones_like(longest))
    new.x_trial = new.x + direction * scale[:, None, None]
    return new, StepInfo(batch=trial, evaluation=ev, accepted=accepted)
