"""The DFT job layout: how many external calculations run at once, on which ranks, with how many cores.

A job of many ranks must not start one DFT run per rank: 192 ranks on 3 nodes with
``mpirun -n 64 vasp_std`` would start 191 runs of 64 processes. Instead each node (or group of
``nodes_per_job`` nodes) runs ``jobs_per_node`` calculations at a time (default one, using the
node's cores); one rank of the node starts each and the node's other ranks sleep until the
labelling ends, leaving their cores to the code. The core count of a job fills ``{cores}`` and the
node count ``{nodes}`` in the command template (and in ``env`` values, e.g.
``OMP_NUM_THREADS: "{cores}"``).

:func:`plan_jobs` is pure: from the node index of every rank (``parallel.nodes.node_layout``) and
the settings it gives every rank its :class:`JobSlot` or none, identically on every rank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

#: placeholders of a command template (and of env values); ``${VAR}`` is left to the shell
PLACEHOLDERS = ("input", "output", "directory", "name", "cores", "nodes")
_PLACEHOLDER = re.compile(r"(?<!\$)\{(\w+)\}")


def template_placeholders(template: str) -> list[str]:
    """Every ``{word}`` of ``template`` not written as the shell's ``${word}``."""
    return _PLACEHOLDER.findall(template)


def fill_template(template: str, **values) -> str:
    """Replace the known placeholders given in ``values``; leave every other brace alone."""
    def replace(match):
        key = match.group(1)
        return str(values[key]) if key in values and key in PLACEHOLDERS else match.group(0)

    return _PLACEHOLDER.sub(replace, template)


@dataclass(frozen=True)
class JobSlot:
    """One concurrent external calculation: ``cores`` for it (the sum over its nodes), ``nodes``."""

    cores: int = 1
    nodes: int = 1
    node: int = 0          # index of its (first) node

    def fill(self, template: str, **values) -> str:
        return fill_template(template, cores=self.cores, nodes=self.nodes, **values)


@dataclass
class JobPlan:
    """Which world ranks run a job (rank -> slot); the others wait."""

    slots: dict = field(default_factory=dict)
    n_nodes: int = 1
    notes: list = field(default_factory=list)      # why fewer jobs than asked, for the log

    def text(self) -> str:
        cores = sorted({slot.cores for slot in self.slots.values()})
        nodes = sorted({slot.nodes for slot in self.slots.values()})
        return (f"{len(self.slots)} concurrent job(s) on {self.n_nodes} node(s), "
                f"{'/'.join(map(str, cores))} core(s) and {'/'.join(map(str, nodes))} node(s) each")


def plan_jobs(rank_nodes: Sequence[int], settings, *, root_works: bool) -> JobPlan:
    """The job layout for ranks whose node indices are ``rank_nodes`` (world rank order).

    ``settings``: LabellerSettings (``jobs_per_node``, ``cores_per_job``, ``nodes_per_job``,
    ``cores_per_node``, ``max_jobs``). The root (rank 0) runs a job only when ``root_works`` (or
    it is the only rank); with too few ranks on a node, the node runs fewer jobs (noted).
    """
    n_nodes = max(rank_nodes) + 1 if rank_nodes else 1
    ranks_by_node = [[r for r, n in enumerate(rank_nodes) if n == node] for node in range(n_nodes)]
    root_eligible = root_works or len(rank_nodes) <= 1

    def eligible(ranks):
        return [r for r in ranks if r != 0 or root_eligible]

    def node_cores(node):
        return int(settings.cores_per_node or len(ranks_by_node[node]))

    plan = JobPlan(n_nodes=n_nodes)
    per_job_nodes = int(settings.nodes_per_job)
    ordered: list[tuple[int, int, JobSlot]] = []    # (index within its node, rank, slot)
    if per_job_nodes > 1:
        groups = n_nodes // per_job_nodes
        if groups == 0:
            plan.notes.append(f"nodes_per_job = {per_job_nodes} but the job has {n_nodes} node(s): "
                              f"one job on all of them")
            groups, per_job_nodes = 1, n_nodes
        elif n_nodes % per_job_nodes:
            plan.notes.append(f"{n_nodes % per_job_nodes} node(s) left idle (not a multiple of "
                              f"nodes_per_job = {per_job_nodes})")
        for group in range(groups):
            members = range(group * per_job_nodes, (group + 1) * per_job_nodes)
            ranks = eligible([r for node in members for r in ranks_by_node[node]])
            cores = int(settings.cores_per_job or sum(node_cores(node) for node in members))
            if ranks:
                ordered.append((0, ranks[0], JobSlot(cores, per_job_nodes, members[0])))
            else:
                plan.notes.append(f"nodes {members[0]}-{members[-1]}: no rank to start a job")
    else:
        for node, ranks in enumerate(ranks_by_node):
            cores_here = node_cores(node)
            jobs = settings.jobs_per_node or (max(1, cores_here // settings.cores_per_job)
                                              if settings.cores_per_job else 1)
            cores = int(settings.cores_per_job or max(1, cores_here // jobs))
            runners = eligible(ranks)[:jobs]
            if len(runners) < jobs:
                plan.notes.append(f"node {node}: {len(runners)} of {jobs} job(s) "
                                  f"({len(ranks)} rank(s), the root only deals): start more ranks")
            ordered += [(i, rank, JobSlot(cores, 1, node)) for i, rank in enumerate(runners)]
    if not ordered:   # nobody else can: the root runs the jobs itself
        plan.notes.append("no rank besides the root to run jobs: the root runs them")
        ordered.append((0, 0, JobSlot(int(settings.cores_per_job or node_cores(0)), 1, 0)))
    ordered.sort()    # round robin over nodes, so a cap spreads the jobs
    if settings.max_jobs is not None:
        ordered = ordered[:settings.max_jobs]
    plan.slots = {rank: slot for _, rank, slot in ordered}
    return plan


def check_template(template: Optional[str], where: str) -> Optional[str]:
    """A one-line problem when ``template`` uses a placeholder that does not exist, else None."""
    unknown = [p for p in template_placeholders(template or "") if p not in PLACEHOLDERS]
    if unknown:
        return (f"{where} = {template!r}: unknown placeholder(s) "
                + ", ".join("{%s}" % p for p in unknown)
                + "; known: " + ", ".join("{%s}" % p for p in PLACEHOLDERS)
                + " (write ${VAR} for a shell variable)")
    return None
