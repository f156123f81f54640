"""A committee of models: k potentials trained on the same labels from different seeds, whose
disagreement on a structure measures how little the labels constrain it (query by committee, as
DP-GEN and EDDP select their next labels).

Pure functions, no MPI: which seed each member trains with, how k members are dealt to the rank
groups of a job, the spread of the members' energies per atom on a list of structures, and the
members' mean as one model (:class:`CommitteeMean`: what ``acnn_mpi train`` writes for a committee,
one file that every model loader reads).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def member_seed(seed: int, member: int) -> int:
    """Training seed of committee member ``member`` (0: the campaign's own, so member 0 is the
    model a campaign without committee would train)."""
    return int(seed) + int(member)


def member_config(config, member: int):
    """``config`` (a CampaignConfig, or any object with a pydantic ``training``) with member
    ``member``'s training seed; member 0 gets ``config`` itself."""
    import copy

    if member == 0:
        return config
    training = config.training.model_copy(update={"seed": member_seed(config.training.seed, member)})
    if hasattr(config, "model_copy"):
        return config.model_copy(update={"training": training})
    clone = copy.copy(config)
    clone.training = training
    return clone


def member_groups(size: int, k: int) -> list[list[int]]:
    """Members trained by each rank group: ``min(k, size)`` groups (group g = the ranks r with
    r % n_groups == g, data-parallel over them), member m by group m % n_groups, in turn when a
    group has several. ``size`` ≥ k: one member per group; 1 rank: every member in turn."""
    if size < 1 or k < 1:
        raise ValueError(f"need size ≥ 1 and k ≥ 1, got size {size}, k {k}")
    n_groups = min(k, size)
    return [[m for m in range(k) if m % n_groups == g] for g in range(n_groups)]


def energies_per_atom(model: torch.nn.Module, atoms_list: Sequence, batch_size: int = 32) -> np.ndarray:
    """(B,) energy per atom (eV/atom) of each structure under ``model`` (single points, no
    forces: the sum of the model's atomic energies)."""
    from ..neighbors import neighbor_list
    from ..model.forces import model_dtype_device
    from ..state import Batch

    dtype, device = model_dtype_device(model)
    out = np.zeros(len(atoms_list), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(atoms_list), batch_size):
            chunk = atoms_list[start:start + batch_size]
            batch = Batch.from_atoms(chunk, device=device, dtype=dtype)
            edges = neighbor_list(batch, float(model.cutoff))
            atomic = model.atomic_energies(batch, edges).to(torch.float64)
            energy = torch.zeros(batch.n_systems, dtype=torch.float64, device=device)
            energy.index_add_(0, batch.system_idx, atomic)
            out[start:start + len(chunk)] = (energy / batch.n_atoms.to(torch.float64)).cpu().numpy()
    return out


def committee_spread(energies: np.ndarray) -> np.ndarray:
    """(B,) spread of a committee's predictions: the standard deviation over the members (axis 0
    of the (k, B) ``energies``, eV/atom; population form, so two members give |E₁ − E₂| / 2)."""
    energies = np.asarray(energies, dtype=np.float64)
    if energies.ndim != 2 or energies.shape[0] < 2:
        raise ValueError(f"need (k ≥ 2, B) energies, got shape {energies.shape}")
    return energies.std(axis=0)


#: Format tag of a committee model file (:meth:`CommitteeMean.save`).
COMMITTEE_FORMAT = "acnn-committee"
COMMITTEE_VERSION = 1


class CommitteeMean(torch.nn.Module):
    """The mean of k atomic-energy models as one model: E_i = (1/k) Σ_m E_i^(m), so its forces
    and virial (autograd of the total) are the members' means too. It has the interface
    ``evaluate_errors``, ``evaluate`` and ``ACNNCalculator`` use (``cutoff``, ``atomic_energies``):
    the neighbour list is built once at the largest member cutoff and each member ignores the
    pairs beyond its own. Members must share one dtype, device and element list. It is evaluated
    k times per structure: relax with a member where speed matters more than accuracy.
    """

    def __init__(self, members: Sequence[torch.nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("a committee mean needs at least one member")
        from ..model.forces import model_dtype_device

        kinds = {model_dtype_device(m) for m in members}
        if len(kinds) > 1:
            raise ValueError(f"committee members differ in dtype/device {sorted(map(str, kinds))}; "
                             "convert them to one (model.to(dtype=..., device=...))")
        element_lists = {tuple(getattr(m, "elements", ())) for m in members}
        if len(element_lists) > 1:
            raise ValueError(f"committee members know different elements {sorted(element_lists)}")
        self.members = torch.nn.ModuleList(members)
        self.cutoff = max(float(m.cutoff) for m in members)
        self.elements = list(element_lists.pop())

    def atomic_energies(self, batch, edges) -> torch.Tensor:
        """(N,) the members' mean atomic energies, eV, float64."""
        total = self.members[0].atomic_energies(batch, edges)
        for member in self.members[1:]:
            total = total + member.atomic_energies(batch, edges)
        return total / len(self.members)

    def save(self, path) -> None:
        """One file: the format tag and each member as its class path and save-file bytes."""
        import os

        from .models import model_record

        payload = {"format": COMMITTEE_FORMAT, "version": COMMITTEE_VERSION,
                   "members": [model_record(m) for m in self.members]}
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> "CommitteeMean":
        """Read :meth:`save`'s file; ValueError when it is not one."""
        payload = read_committee_payload(path)
        if payload is None:
            raise ValueError(f"{path} is not a committee model file (format {COMMITTEE_FORMAT!r})")
        from .models import model_from_record

        return cls([model_from_record(record) for record in payload["members"]])


def read_committee_payload(path):
    """The payload of a committee model file, or None when ``path`` holds anything else
    (an ACNN file, a checkpoint, a foreign file); ValueError for another version of the format."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("format") != COMMITTEE_FORMAT:
        return None
    if payload.get("version") != COMMITTEE_VERSION:
        raise ValueError(f"{path} is a committee model file of format version "
                         f"{payload.get('version')!r}; this acnn_mpi reads version {COMMITTEE_VERSION}")
    return payload
