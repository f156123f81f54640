"""The campaign's committee (``search.committee: k``): k models trained on the same labels, each
refined from its own previous checkpoint, and their energy spread on the relaxed candidates.

Member 0 is the campaign's model (``models/model_K.pt``, ``train_K/``): it alone relaxes the CSP
structures, so the CSP stage costs what it costs without a committee (relaxing with the mean would
take k model evaluations per optimizer step, the bulk of a campaign's compute). Members 1..k−1
live in ``train_K/member_M/`` and ``models/model_K.member_M.pt``. After the CSP stage every member
evaluates the distinct candidates once (k single points per structure against some 50-300
optimizer steps of the relaxation); the spread steers the selection (csp/selection.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def member_model(paths, k: int, member: int) -> Path:
    """The model file of committee member ``member`` after iteration ``k``."""
    if member == 0:
        return paths.model(k)
    return paths.root / "models" / f"model_{k:03d}.member_{member}.pt"


def member_train_dir(paths, k: int, member: int) -> Path:
    """The training folder (checkpoint, metrics) of committee member ``member`` in iteration ``k``."""
    if member == 0:
        return paths.train_dir(k)
    return paths.train_dir(k) / f"member_{member}"


def require_members(paths, k: int, n_members: int, collective: bool) -> None:
    """A one-line UserError unless every member model of iteration ``k`` exists (a committee
    switched on, or made larger, in a campaign already past that iteration)."""
    from ..errors import UserError

    missing = [m for m in range(n_members) if not member_model(paths, k, m).is_file()]
    if missing:
        raise UserError(f"search.committee = {n_members}: {member_model(paths, k, missing[0])} not "
                        f"found (this campaign reached iteration {k} with {missing[0]} member(s)); "
                        "keep its former search.committee, or start a new output_dir",
                        collective=collective)


@dataclass
class CommitteeTraining:
    """What the committee's training gave: member 0's TrainResult (on the root), every member's
    final validation errors (root), and whether any member was stopped."""

    result: object
    valid: dict = field(default_factory=dict)   # member -> validation errors (meV/atom, ...)
    stopped: bool = False


def train_committee(config, paths, comm, k: int, order, held_out, should_stop) -> CommitteeTraining:
    """Train the k members of iteration ``k`` (collective): the ranks split into min(k, size)
    groups, each trains its members data-parallel, in turn; each member resumes its own checkpoint
    and refines its own model of iteration k−1."""
    from ..train.api import train_model
    from ..train.committee import member_config
    from ..train.committee_training import reports_for_group, train_in_groups

    if k > 0:
        require_members(paths, k - 1, config.search.committee, collective=comm.size > 1)

    def train_one(member, group):
        return train_model(
            member_config(config, member), str(paths.labels), member_train_dir(paths, k, member),
            group, resume=True, indices=order, valid_indices=held_out,
            refine_from=member_model(paths, k - 1, member) if k > 0 else None,
            continue_schedule_from=member_train_dir(paths, k - 1, member) if k > 0 else None,
            should_stop=should_stop)

    outcomes, stopped = train_in_groups(comm, config.search.committee, train_one)
    speaks = reports_for_group(comm, config.search.committee)
    valid = {member: {key: float(v) for key, v in (outcome.metrics.get("valid") or {}).items()
                      if np.isscalar(v)}
             for member, outcome in outcomes.items() if speaks}
    gathered = comm.gather(valid)
    merged = {m: v for part in (gathered or []) for m, v in part.items()}
    return CommitteeTraining(result=outcomes.get(0), valid=merged, stopped=stopped)


def commit_members(paths, k: int, n_members: int) -> None:
    """Root: copy the members' trained models (1..k−1) to ``models/`` atomically."""
    import shutil

    from ..train.trainer import MODEL_NAME

    for member in range(1, n_members):
        target = member_model(paths, k, member)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(member_train_dir(paths, k, member) / MODEL_NAME, tmp)
        tmp.replace(target)


def spread_on_ranks(comm, config, paths, k: int, results, rows) -> np.ndarray | None:
    """(B,) committee spread (eV/atom) of ``rows`` of ``results`` under the members of iteration
    ``k`` (the models that relaxed iteration k+1), NaN for rows not asked for; the rows are dealt
    round robin over the ranks of ``comm`` (collective). Root: the array; other ranks: None."""
    from ..model.potential import ACNN
    from ..train.committee import committee_spread, energies_per_atom

    require_members(paths, k, config.search.committee, collective=comm.size > 1)
    rows = np.asarray(comm.bcast(np.asarray(rows, np.int64) if comm.is_root else None), np.int64)
    mine = rows[comm.rank::comm.size]
    atoms = [results.load(int(r)) for r in mine]
    energies = np.stack([energies_per_atom(ACNN.load(member_model(paths, k, m)), atoms)
                         for m in range(config.search.committee)]) if len(atoms) else None
    spread = committee_spread(energies) if energies is not None else np.zeros(0)
    gathered = comm.gather((mine, spread))
    if not comm.is_root:
        return None
    out = np.full(len(results), np.nan)
    for part, values in gathered:
        out[part] = values
    return out
