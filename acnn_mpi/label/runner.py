"""Labelling many structures over MPI ranks, resumable, with every failure recorded.

:func:`label_structures` deals structures out one at a time with
:func:`acnn_mpi.parallel.tasks.run_dynamic` (DFT times vary by orders of magnitude); each rank runs
its own labeller and sends the result back; **the root alone writes** the labels file and the
failure record, appending and flushing each result as it arrives.

Why the root writes (and not one shard per worker, then a merge): a label is small (energy,
N×3 forces, 3×3 stress: kilobytes) next to a DFT calculation (minutes to hours), so sending it
costs nothing; one writer means no concurrent HDF5 writers, no merge step that a killed job could
leave half done, and a single file that is always consistent to resume from. A killed job loses
only the calculations in flight: on restart, ids already in the labels file, and ids with
``max_failed_runs`` recorded failures (unless ``retry_failed``), are skipped.

With external codes (``command``, ``cp2k``, ``isolate: true``) the root does not label by default:
while it waited for its own DFT job, finished workers would wait for it. Run N + 1 ranks for N
concurrent calculations.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from .sink import FailureLog, LabelSink, default_failures_path, labelled_frame

log = logging.getLogger(__name__)


@dataclass
class LabelSummary:
    """Counts and timings of one labelling run (on the root; other ranks get an empty one)."""

    requested: int = 0
    skipped_done: int = 0
    skipped_failed: int = 0
    labelled: int = 0
    failed: int = 0
    stopped_early: bool = False
    failures_by_kind: dict = field(default_factory=dict)
    seconds: list = field(default_factory=list)        # per finished structure, all attempts
    attempts: int = 0
    #: labeller evaluations spent, failed attempts included: a single point counts 1, a
    #: relaxation one per ionic step (force evaluation)
    evaluations: int = 0
    #: Σ over results of wall seconds × cores of the job that ran it (core·s)
    core_seconds: float = 0.0
    per_rank: dict = field(default_factory=dict)
    elapsed: float = 0.0
    labels_path: str = ""
    failures_path: str = ""

    def text(self) -> str:
        lines = [f"labelled {self.labelled}, failed {self.failed} of {self.requested} structures "
                 f"({self.skipped_done} already labelled, {self.skipped_failed} skipped after earlier "
                 f"failures) in {self.elapsed:.1f} s"]
        if self.seconds:
            lines.append("per structure: mean %.2f s, median %.2f s, max %.2f s; %d attempts, "
                         "%d evaluations, %.0f core·s"
                         % (statistics.mean(self.seconds), statistics.median(self.seconds),
                            max(self.seconds), self.attempts, self.evaluations, self.core_seconds))
        if self.failures_by_kind:
            lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in sorted(self.failures_by_kind.items()))
                         + f" (details: {self.failures_path})")
        if self.per_rank:
            lines.append("per rank: " + ", ".join(f"{r}: {n}" for r, n in sorted(self.per_rank.items())))
        if self.stopped_early:
            lines.append("stopped early on a shutdown request: run again to label the rest")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["seconds"] = [round(s, 3) for s in self.seconds]
        return out


def external_process_kind(settings) -> bool:
    return settings.kind in ("command", "cp2k") or (settings.kind == "ase" and settings.isolate)


def label_structures(comm, structures, settings, labels_path: str, *,
                     failures_path: Optional[str] = None, mode: str = "label",
                     pressure_gpa: float = 0.0, fmax: float = 0.01, steps: int = 200,
                     retry_failed: bool = False, max_failed_runs: int = 1,
                     root_works: Optional[bool] = None,
                     should_stop: Optional[Callable[[], bool]] = None,
                     base_dir: Optional[str] = None, source: Optional[str] = None,
                     iteration: Optional[int] = None,
                     steps_path: Optional[str] = None) -> LabelSummary:
    """Label ``structures`` (a list of (structure_id, Atoms), read on the root only) over ``comm``.

    Every rank calls this. ``settings`` is the ``labeller:`` mapping (or LabellerSettings);
    ``mode`` is ``label`` (single points) or ``relax`` (at ``pressure_gpa`` to ``fmax`` in at most
    ``steps``). Results go to ``labels_path`` and failures to ``failures_path`` (default
    ``<labels>.failures.jsonl``), written by the root as they arrive; ``source`` and
    ``iteration`` are stored with every frame. A relaxation's every ionic step (with its labels)
    goes to ``steps_path`` (default ``<labels>.steps.<ext>``), with ``relax_step`` per frame.
    Returns the summary on the root (an empty one elsewhere).
    """
    from ..parallel.tasks import run_dynamic
    from .factory import make_labeller
    from .validate import validate_labeller

    if mode not in ("label", "relax"):
        raise ValueError(f"mode must be 'label' or 'relax', got {mode!r}")
    failures_path = failures_path or default_failures_path(labels_path)
    if mode == "relax" and steps_path is None:
        root, ext = os.path.splitext(labels_path)
        steps_path = root + ".steps" + ext
    start = time.monotonic()

    def plan():
        s = validate_labeller(settings, base_dir=base_dir)
        sink = LabelSink(labels_path)
        dropped = sink.repair()
        if dropped:
            log.warning("%s: dropped the half-written end left by a killed job (%d)", labels_path, dropped)
        done = sink.labelled_ids()
        failed_before = FailureLog(failures_path).failure_counts()
        todo, skipped_done, skipped_failed = [], 0, 0
        for sid, atoms in structures or []:
            if sid in done:
                skipped_done += 1
            elif not retry_failed and failed_before.get(sid, 0) >= max_failed_runs:
                skipped_failed += 1
            else:
                todo.append((sid, atoms))
        return s, todo, skipped_done, skipped_failed, len(structures or [])

    # the root validates settings and reads the files; every rank fails alike on bad input
    s, todo, skipped_done, skipped_failed, requested = _plan_everywhere(comm, plan)
    if root_works is None and comm.size > 1 and external_process_kind(s):
        root_works = False
    summary = LabelSummary(requested=requested, skipped_done=skipped_done,
                           skipped_failed=skipped_failed, labels_path=labels_path,
                           failures_path=failures_path)
    slot, run_comm, layout_text = _job_layout(comm, s, root_works)
    labeller = None
    if slot is not None:
        labeller = make_labeller(s)
        labeller.job = slot
    if comm.is_root:
        log.info("labelling %d structure(s) with %s on %d rank(s), %s (%d already labelled, %d "
                 "skipped after earlier failures)", len(todo), labeller.name if labeller else s.kind,
                 comm.size, layout_text, skipped_done, skipped_failed)
    host = socket.gethostname()

    def work(task):
        sid, atoms = task
        if mode == "label":
            result = labeller.label(atoms, name=f"s{sid}")
        else:
            result = labeller.relax(atoms, pressure_gpa=pressure_gpa, fmax=fmax, steps=steps,
                                    name=f"s{sid}")
        result.info.update(host=host, rank=comm.rank, cores=slot.cores, nodes=slot.nodes)
        return result

    sink = LabelSink(labels_path, source=source, iteration=iteration) if comm.is_root else None
    steps_sink = (LabelSink(steps_path, source=source, iteration=iteration)
                  if comm.is_root and steps_path else None)
    failures = FailureLog(failures_path) if comm.is_root else None
    by_kind: Counter = Counter()
    per_rank: Counter = Counter()

    def on_result(task, result, rank):
        sid, atoms = task
        rank = result.info.get("rank", rank)   # the world rank (run_comm may be a subset)
        per_rank[rank] += 1
        summary.seconds.append(result.wall_time)
        summary.attempts += result.attempts
        summary.evaluations += result.evaluations
        summary.core_seconds += result.wall_time * int(result.info.get("cores", 1))
        refused = {}
        if result.ok:
            extra = {k: result.info[k] for k in ("relax_converged", "steps", "pressure_gpa", "enthalpy")
                     if k in result.info}
            refused = sink.append([labelled_frame(result, sid, extra_info=extra)])
            if refused:   # the store's validation (e.g. atoms closer than 0.3 Å): not a label
                result.ok, result.failure = False, "invalid"
                result.reason = "refused by the labels store: " + "; ".join(refused[0])
        if result.ok and steps_sink is not None and result.trajectory:
            steps_sink.append([_step_frame(frame, sid, step, result.labeller)
                               for step, frame in enumerate(result.trajectory)])
        if result.ok:
            summary.labelled += 1
            log.info("s%s: %s E = %.6f eV (%d atoms, %.1f s, %d attempt(s), rank %d) [%d/%d]",
                     sid, "relaxed" if mode == "relax" else "labelled", result.energy, len(result.atoms),
                     result.wall_time, result.attempts, rank, summary.labelled + summary.failed, len(todo))
        else:
            summary.failed += 1
            by_kind[result.failure] += 1
            failures.append(dict(
                structure_id=int(sid), mode=mode, failure=result.failure, reason=result.reason,
                attempts=result.attempts, wall_time=round(result.wall_time, 3),
                labeller=result.labeller, formula=atoms.get_chemical_formula(), n_atoms=len(atoms),
                rank=rank, host=result.info.get("host"), directory=result.directory,
                failed_attempts=result.info.get("failed_attempts", []),
                time=time.strftime("%Y-%m-%dT%H:%M:%S"), log_tail=result.log_tail))
            log.warning("s%s: FAILED (%s) %s after %d attempt(s), %.1f s, rank %d [%d/%d]", sid,
                        result.failure, result.reason, result.attempts, result.wall_time, rank,
                        summary.labelled + summary.failed, len(todo))

    try:
        if run_comm is not None:
            run_dynamic(run_comm, todo if comm.is_root else None, work, on_result,
                        root_works=root_works if run_comm is comm else slot is not None,
                        should_stop=should_stop)
    finally:
        if labeller is not None:
            labeller.close()
        if run_comm is not None and run_comm is not comm:
            run_comm.free()
    comm.sleeping_barrier()   # ranks without a job sleep here while the others run theirs
    if comm.is_root:
        summary.failures_by_kind = dict(by_kind)
        summary.per_rank = dict(per_rank)
        summary.stopped_early = summary.labelled + summary.failed < len(todo)
        summary.elapsed = time.monotonic() - start
        return summary
    return LabelSummary()


def _step_frame(frame, structure_id: int, step: int, labeller: str):
    """One ionic step of a relaxation as a stored frame (its labels on a SinglePointCalculator)."""
    from .. import keys

    frame = frame.copy() if frame.calc is None else frame
    frame.info = {keys.STRUCTURE_ID: int(structure_id), "labeller": labeller, "relax_step": int(step),
                  "tags": f"relax_step={int(step)}"}
    return frame


def _job_layout(comm, settings, root_works):
    """(this rank's JobSlot or None, the communicator of the ranks that deal or run jobs or None,
    a description). In-process calculators: every rank labels on one core. External codes: the
    job layout of :func:`acnn_mpi.label.layout.plan_jobs` over the nodes of ``comm``."""
    from ..parallel.nodes import node_layout
    from .layout import JobSlot, plan_jobs

    if not external_process_kind(settings):
        return JobSlot(), comm, "in-process calculators, one per rank"
    layout = node_layout(comm)
    plan = plan_jobs(comm.allgather(layout.node), settings, root_works=bool(root_works))
    if comm.is_root:
        for note in plan.notes:
            log.warning("DFT job layout: %s", note)
    slot = plan.slots.get(comm.rank)
    if comm.size == 1:
        return slot, comm, plan.text()
    active = comm.is_root or slot is not None
    sub = comm.split(0 if active else 1)
    if not active:
        sub.free()
        return None, None, plan.text()
    return slot, sub, plan.text()


def _plan_everywhere(comm, plan):
    """Run ``plan`` on the root; broadcast the settings and counts (the structures stay on the
    root, which deals them out)."""
    box = {}

    def root_part():
        s, todo, skipped_done, skipped_failed, requested = plan()
        box["todo"] = todo
        return s, skipped_done, skipped_failed, requested

    s, skipped_done, skipped_failed, requested = comm.root_then_bcast(root_part)
    return s, box.get("todo", []), skipped_done, skipped_failed, requested
