"""The boxes of the paper's Fig. 2 as small objects: each stage plans on the root, works on every
rank and commits on the root; :meth:`acnn_mpi.campaign.controller.Controller.run_stage` is the
only place with the MPI choreography around them (the plan's errors reach every rank, a signal
stops between work and commit, the committed state reaches every rank).

A stage's ``work`` may be collective (every rank calls it); ``plan`` and ``commit`` run on the root
only and may read and change ``ctl.state``; ``commit`` returns the state fields to set (the next
stage). ``work`` returning :data:`STOPPED` ends the run before the commit (resumed later).
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np

from . import shutdown
from .plan import plan_chunks

log = logging.getLogger(__name__)

#: what ``work`` returns when the stage was stopped before its end (a signal, a stopped training)
STOPPED = object()


class _Progress:
    """The root's running count of a CSP stage (the B_max rule) and its progress lines."""

    def __init__(self, k: int, budget: int, committed=None):
        committed = committed or {}
        self.k, self.budget = k, budget
        self.structures = sum(committed.values())
        self.unphysical = int(committed.get("unphysical", 0))
        self.start = self.last = time.monotonic()
        self.first = self.structures

    def on_result(self, task, counts: dict, rank: int) -> None:
        self.structures += counts["finished"]
        self.unphysical += counts["statuses"].get("unphysical", 0)
        now = time.monotonic()
        if now - self.last > 10:
            self.last = now
            rate = (self.structures - self.first) / max(now - self.start, 1e-9)
            log.info("iteration %d CSP: %d/%d structures (%.1f/s, %.0f%% unphysical), ~%.0f s left",
                     self.k, self.structures, self.budget, rate,
                     100 * self.unphysical / max(self.structures, 1),
                     (self.budget - self.structures) / max(rate, 1e-9))


class Stage:
    """plan (root) → work (every rank) → commit (root)."""

    def __init__(self, ctl):
        self.ctl = ctl
        self.config, self.comm, self.paths = ctl.config, ctl.comm, ctl.paths

    def plan(self, k: int):
        return None

    def work(self, k: int, plan):
        return None

    def commit(self, k: int, plan, outcome) -> dict:
        return {}


class Sample(Stage):
    """Iteration 0: N₀ random structures (generated on the ranks) for the first labels."""

    def plan(self, k):
        target = self.paths.sample()
        self.paths.iteration(0).mkdir(parents=True, exist_ok=True)
        if target.exists():
            return None
        return plan_chunks(self.ctl.cells, 0, self.config.search.initial_structures,
                           self.config.relax.chunk_size, self.config.seed, leading=self.ctl.elemental_cells())

    def work(self, k, plan):
        from ..parallel.tasks import run_dynamic
        from .csp_stage import generate_chunk

        if not self.comm.bcast(plan is not None if self.comm.is_root else None):
            return None
        return run_dynamic(self.comm, plan, lambda chunk: generate_chunk(self.config, chunk)[0])

    def commit(self, k, plan, outcome):
        import ase.io

        if outcome is not None:
            target = self.paths.sample()
            structures = [a for _, batch in sorted(outcome, key=lambda d: d[0].index) for a in batch]
            structures += self.ctl.reference_structures()
            tmp = target.with_name(target.name + ".tmp")
            ase.io.write(tmp, structures, format="extxyz")
            tmp.replace(target)
            log.info("initial sampling: %d random structures in %s", len(structures), target)
        return {"stage": "label"}


class CSP(Stage):
    """Random structures relaxed with model k−1 by the relaxation service, until B_max unphysical;
    at each pressure in turn (its own structures, budget and B_max, into its ``iter_K/relax/P<p>/``)."""

    def plan(self, k):
        from .csp_stage import plan_tasks
        from .plan import at_pressure_index

        chunks = plan_chunks(self.ctl.cells, k, self.config.search.structures_per_iteration,
                             self.config.relax.chunk_size, self.config.seed, leading=self.ctl.elemental_cells())
        plans = []
        for view in self.ctl.views:
            view.paths.make(k)
            plans.append(plan_tasks(view.config, view.paths, k, at_pressure_index(chunks, view.index)))
        return plans

    def work(self, k, plan):
        from ..model.descriptor import configure_kernels
        from ..parallel.devices import select_device

        device = select_device(self.config.model.device, self.comm, self.config.parallel.ranks_per_gpu)
        configure_kernels(self.config.model.compile)
        summaries = []
        for view in self.ctl.views:
            if view.index > 0 and self.ctl.stopping():
                return STOPPED
            summaries.append(self._relax(k, view, plan[view.index] if plan is not None else None, device))
        return summaries

    def _relax(self, k, view, plan, device):
        """Every rank: the CSP relaxations of iteration k at one pressure; the ranks' summaries."""
        from ..relax.service import serve
        from .csp_stage import make_service

        search = self.config.search
        tasks, committed = plan if plan is not None else (None, None)
        progress = _Progress(k, search.structures_per_iteration, committed)
        service = make_service(view.config, view.paths, k, self.comm.rank, device=device)
        return serve(self.comm, tasks, service, progress.on_result,
                     should_stop=lambda: shutdown.requested() or progress.unphysical >= search.b_max,
                     abort=shutdown.requested, root_works=self.config.parallel.root_works)

    def commit(self, k, plan, summaries):
        from ..relax import shards

        record = self.ctl.state.record(k)
        record.structures_relaxed = record.unphysical = record.not_converged = 0
        steps = 0.0
        for view, mine in zip(self.ctl.views, summaries):
            done = shards.read_results(view.paths.relax_dir(k))
            counts = {"structures_relaxed": len(done), "unphysical": int((done.status == "unphysical").sum()),
                      "not_converged": int((done.status == "not_converged").sum())}
            record.by_pressure[view.key] = {**record.by_pressure.get(view.key, {}), **counts}
            record.structures_relaxed += counts["structures_relaxed"]
            record.unphysical += counts["unphysical"]
            record.not_converged += counts["not_converged"]
            record.relax_seconds += float(sum(s.busy_s for s in mine))
            steps += float(done.steps.sum()) if len(done) else 0.0
            if counts["unphysical"] >= self.config.search.b_max:
                log.info("iteration %d%s: B_max = %d unphysical structures reached, CSP stage ends", k,
                         self.ctl._at(view), self.config.search.b_max)
        record.relax_steps_mean = steps / max(record.structures_relaxed, 1)
        return {"stage": "process"}


class Process(Stage):
    """Dedup on every rank (sharded by composition); model hull and C_max/L_max selection on the
    root; at each pressure (its own selection file)."""

    def work(self, k, plan):
        from .csp_stage import read_iteration_results
        from .processing import composition_keys, distinct_on_ranks

        out = []
        for view in self.ctl.views:
            results = read_iteration_results(view.paths, k, self.config.elements, view.pressure_gpa)
            keys = composition_keys(results, self.config.elements)
            distinct = distinct_on_ranks(self.comm, view.config, results, keys,
                                         results.enthalpy / np.maximum(results.n_atoms, 1))
            out.append((results, distinct))
        return out

    def commit(self, k, plan, outcome):
        from .processing import select_for_labelling, write_selection

        state = self.ctl.state
        missing = state.record(k - 1).missing_elements if k > 0 else []
        if missing:
            log.info("iteration %d: the labels' hull lacks %s; labelling %s structures again",
                     k, ", ".join(missing), ", ".join(missing))
        state.record(k).selected = 0
        for view, (results, distinct) in zip(self.ctl.views, outcome):
            selection = select_for_labelling(view.config, results, k, required=missing,
                                             labels_path=self.paths.labels, distinct=distinct)
            write_selection(view.paths.selection(k), results, selection)
            state.record(k).selected += len(selection.ids)
            counts = state.record(k).by_pressure.setdefault(view.key, {})
            counts["selected"] = len(selection.ids)
            log.info("iteration %d%s: %d relaxed, %d distinct, %d unphysical, %d hull picks labelled "
                     "before; selected %d for labelling (model hull: %s)", k, self.ctl._at(view),
                     len(results), selection.n_distinct, selection.n_unphysical, selection.n_labelled_before,
                     len(selection.ids), ", ".join(selection.hull_phases) or "-")
        return {"stage": "label"}


class Label(Stage):
    """The labeller on the selection (iteration 0: the random sample and the seeds)."""

    def plan(self, k):
        from .processing import read_selection

        if k > 0:  # every pressure's selection (each pressure's structures have ids of their own)
            return [pair for view in self.ctl.views for pair in read_selection(view.paths.selection(k))]
        import ase.io

        return [(int(a.info["structure_id"]), a) for a in ase.io.read(self.paths.sample(), ":", format="extxyz")]

    def work(self, k, plan):
        from ..label.runner import label_structures

        summary = label_structures(self.comm, plan, self.config.labeller, str(self.paths.labels),
                                   should_stop=shutdown.requested, source="initial" if k == 0 else
                                   f"iteration {k}", iteration=k, root_works=self.config.parallel.root_works)
        if k == 0 and self.config.search.seeds:
            from .plan import PRESSURE_STRIDE
            from .seeds import label_seeds

            for view in self.ctl.views:  # relaxed by the labeller at each pressure
                if self.ctl.stopping():
                    break
                label_seeds(self.comm, view.config, self.paths.labels, should_stop=shutdown.requested,
                            id_offset=view.index * PRESSURE_STRIDE)
        return summary

    def commit(self, k, plan, summary):
        record = self.ctl.state.record(k)
        record.labelled += summary.labelled
        record.label_failures += summary.failed
        record.label_seconds += float(sum(summary.seconds))
        record.label_evaluations += int(summary.evaluations)
        record.label_core_seconds += float(summary.core_seconds)
        log.info("iteration %d labels: %s", k, summary.text().replace("\n", "; "))
        if k > 0:
            validation = self.ctl.learning_curve(k)
            if validation:
                record.validation = validation
        return {"stage": "train"}


class Train(Stage):
    """Model k refined from model k−1 on all labels (DDP over the ranks); then the labels' hull."""

    def plan(self, k):
        from .training_set import training_split

        return training_split(self.paths.labels, self.config.training)

    def work(self, k, plan):
        from ..train.api import train_model

        order, held_out = self.comm.bcast(plan)
        result = train_model(self.config, str(self.paths.labels), self.paths.train_dir(k), self.comm,
                             resume=True, indices=order, valid_indices=held_out,
                             refine_from=self.paths.model(k - 1) if k > 0 else None,
                             continue_schedule_from=self.paths.train_dir(k - 1) if k > 0 else None,
                             should_stop=shutdown.requested)
        return STOPPED if result.stopped else result

    def commit(self, k, plan, result):
        from .controller import _errors_text

        tmp = self.paths.model(k).with_suffix(".tmp")
        shutil.copyfile(result.model_path, tmp)
        tmp.replace(self.paths.model(k))
        record = self.ctl.state.record(k)
        valid = result.metrics.get("valid") or {}
        record.training = {key: float(v) for key, v in valid.items() if np.isscalar(v)}
        log.info("iteration %d: model %d trained (%d frames): %s", k, k, result.n_train, _errors_text(valid))
        self.ctl.update_hull(k)
        return {"iteration": k + 1, "stage": "csp"}


class Final(Stage):
    """The top-K near-hull structures of each pressure relaxed by the labeller at that pressure;
    the final hull of each pressure (and, over several, the enthalpy-pressure comparison)."""

    def plan(self, k):
        plans = []
        for view in self.ctl.views:
            structures = self.ctl.final_candidates(view)
            log.info("final stage%s: relaxing %d near-hull structures with the labeller",
                     self.ctl._at(view), len(structures))
            plans.append(structures)
        return plans

    def work(self, k, plan):
        from ..label.runner import label_structures

        summaries = []
        for view in self.ctl.views:
            if view.index > 0 and self.ctl.stopping():
                return STOPPED
            view.paths.final.mkdir(parents=True, exist_ok=True)
            summaries.append(label_structures(
                self.comm, plan[view.index] if plan is not None else None, self.config.labeller,
                str(view.paths.final / "relaxed.h5"), mode="relax", pressure_gpa=view.pressure_gpa,
                fmax=max(self.config.relax.fmax_ev_per_a, 0.01), should_stop=shutdown.requested,
                source="final", iteration=self.ctl.state.iteration,
                root_works=self.config.parallel.root_works))
        return summaries

    def commit(self, k, plan, summaries):
        state = self.ctl.state
        sources = []
        for view, summary in zip(self.ctl.views, summaries):
            state.final_relaxed += summary.labelled
            state.final_failed += summary.failed
            state.final_evaluations += int(summary.evaluations)
            state.final_core_seconds += float(summary.core_seconds)
            sources.append(self.ctl.final_hull(view))
        state.final_hull_source = sources[0] if len(sources) == 1 else "; ".join(
            f"{view.pressure_gpa:g} GPa: {source}" for view, source in zip(self.ctl.views, sources))
        self.ctl.compare_pressures()
        return {"final_done": True}
