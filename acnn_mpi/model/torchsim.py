"""ACNN (or any acnn_mpi atomic-energy model) as a TorchSim model (``torch-sim-atomistic``).

Optional: install with ``pip install acnn_mpi[bench]``. The wrapper makes a model usable with
TorchSim's batched optimizers and integrators::

    import torch_sim as ts
    from acnn_mpi.model.torchsim import TorchSimModel

    ts_model = TorchSimModel(ACNN.load("model.pt"))
    state = ts.initialize_state(atoms_list, ts_model.device, ts_model.dtype)
    init, update = ts.optimizers.frechet_cell_fire(ts_model, scalar_pressure=p_ev_per_a3)

Energies, forces and stress come from :func:`acnn_mpi.model.forces.evaluate` (one batched call,
exact derivatives, stress in ASE's sign convention as TorchSim expects), in the model's dtype.
TorchSim's cell is column vectors; acnn_mpi's is rows: the wrapper converts.
"""

from __future__ import annotations

import torch

from ..state import Batch
from .forces import evaluate, model_dtype_device

try:  # TorchSim is an optional dependency
    from torch_sim.models.interface import ModelInterface as _Base

    HAVE_TORCH_SIM = True
except ImportError:  # pragma: no cover - exercised only without the extra
    _Base = torch.nn.Module
    HAVE_TORCH_SIM = False


class TorchSimModel(_Base):
    """A TorchSim ``ModelInterface`` around an acnn_mpi atomic-energy model.

    Args:
        model: a module with ``cutoff`` (Å) and ``atomic_energies(batch, edges)`` (eV), e.g. ACNN.
        compute_stress: also return the stress (B, 3, 3) eV/Å³ (needed for cell relaxation).

    Attributes:
        n_calls: forward calls so far; ``n_structure_evaluations``: structures evaluated so far
            (the sum of the batch sizes), for counting model evaluations per structure.
    """

    def __init__(self, model: torch.nn.Module, *, compute_stress: bool = True):
        if not HAVE_TORCH_SIM:
            raise ImportError("TorchSimModel needs torch-sim-atomistic: pip install 'acnn_mpi[bench]'")
        super().__init__()
        self.model = model
        self._dtype, self._device = model_dtype_device(model)
        self._compute_stress = bool(compute_stress)
        self._compute_forces = True
        self.n_calls = 0
        self.n_structure_evaluations = 0

    def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
        """``state``: a TorchSim ``SimState`` (or its dict). Returns ``energy`` (B,) eV,
        ``forces`` (N, 3) eV/Å and, with ``compute_stress``, ``stress`` (B, 3, 3) eV/Å³."""
        if isinstance(state, dict):
            from torch_sim.state import SimState

            state = SimState(**state)
        n_systems = int(state.n_systems)
        pbc = torch.as_tensor(state.pbc, device=state.positions.device)
        pbc = pbc.expand(n_systems, 3) if pbc.dim() < 2 else pbc
        batch = Batch(positions=state.positions.to(self._dtype), numbers=state.atomic_numbers.long(),
                      cell=state.row_vector_cell.to(self._dtype), pbc=pbc.bool(),
                      system_idx=state.system_idx.long())
        self.n_calls += 1
        self.n_structure_evaluations += n_systems
        finite = torch.isfinite(batch.cell).flatten(1).all(1)
        bad_atoms = (~torch.isfinite(batch.positions).all(1)).long()
        finite = finite & (torch.zeros_like(batch.n_atoms).index_add(0, batch.system_idx, bad_atoms) == 0)
        if bool(finite.all()):
            out = evaluate(self.model, batch, compute_forces=True, compute_stress=self._compute_stress)
            energy, forces, stress = out.energy, out.forces, out.stress
        else:  # a diverged structure gets NaN; the others are evaluated
            energy, forces, stress = self._evaluate_finite(batch, finite)
        result = {"energy": energy.detach(), "forces": forces.detach()}
        if self._compute_stress:
            result["stress"] = stress.detach()
        return result

    def _evaluate_finite(self, batch: Batch, finite: torch.Tensor):
        nan = float("nan")
        kw = dict(dtype=self._dtype, device=batch.positions.device)
        energy = torch.full((batch.n_systems,), nan, **kw)
        forces = torch.full_like(batch.positions, nan)
        stress = torch.full((batch.n_systems, 3, 3), nan, **kw)
        keep = torch.nonzero(finite).flatten()
        if keep.numel():
            atoms = finite[batch.system_idx]
            local = torch.cumsum(finite.long(), 0) - 1
            sub = Batch(positions=batch.positions[atoms], numbers=batch.numbers[atoms], cell=batch.cell[keep],
                        pbc=batch.pbc[keep], system_idx=local[batch.system_idx[atoms]])
            out = evaluate(self.model, sub, compute_forces=True, compute_stress=self._compute_stress)
            energy[keep], forces[atoms] = out.energy, out.forces
            if self._compute_stress:
                stress[keep] = out.stress
        return energy, forces, stress
