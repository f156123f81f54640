"""The self-optimizing loop (paper §II.B, Fig. 2; SPEC §9), run by every rank in lock step.

Iteration 0 samples N₀ random structures, labels them and trains the first model. Iteration k ≥ 1
relaxes random structures with model k−1 on all ranks (until B_max unphysical ones or the budget),
processes them (dedup, hull, C_max/L_max selection), labels the selection, measures model k−1 on
those labels (the learning curve), refines model k on all labels, and updates the phase diagram.
The loop stops when the hull has not changed for ``converge_iterations`` iterations or at
``max_iterations``; then the top-K near-hull structures are relaxed with the labeller.

The root decides and saves the state after each stage; every rank reads it from the root. A stage
is either redone from its durable outputs (chunk files, the label store, the training checkpoint)
or skipped, so a run killed at any moment resumes with nothing finished lost or redone.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from . import shutdown
from .layout import CampaignPaths
from .plan import ITERATION_STRIDE, Cell, plan_chunks, search_cells
from .state import CampaignState, load_state, save_state
from .training_set import training_split, usable_labels

log = logging.getLogger(__name__)

#: exit code of a run stopped by SIGTERM/SIGUSR1 before the campaign finished (resubmit to resume)
EXIT_STOPPED = 3

#: structure id of the given reference structure of element k (``references.structures``):
#: REFERENCE_ID - k, the top of iteration 0's id range, above every generated structure
REFERENCE_ID = ITERATION_STRIDE - 1


def run_campaign(config, comm, *, max_iterations: int | None = None) -> int:
    """Run or resume the campaign of ``config`` on every rank of ``comm``; 0 when finished."""
    from ..csp.compositions import compositions_from_config

    paths = CampaignPaths(Path(config.output_dir))
    if comm.is_root:
        paths.make()
        _log_to_file(paths.log)
    comm.barrier()
    shutdown.install(margin_s=config.parallel.walltime_margin_s, comm=comm)
    state = comm.root_then_bcast(lambda: load_state(paths.root))
    cells = comm.root_then_bcast(lambda: search_cells(compositions_from_config(config)))
    limit = config.search.max_iterations if max_iterations is None else max_iterations
    if comm.is_root:
        log.info("campaign %s: %s at %.4g GPa, %d cells, %d rank(s), output %s; resuming at "
                 "iteration %d, stage %s", config.name, "-".join(config.elements), config.pressure,
                 len(cells), comm.size, paths.root, state.iteration, state.stage)
    return Controller(config, comm, paths, state, cells, limit).run()


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("acnn_mpi").addHandler(handler)


class Controller:
    def __init__(self, config, comm, paths: CampaignPaths, state: CampaignState, cells: list[Cell],
                 max_iterations: int):
        self.config = config
        self.comm = comm
        self.paths = paths
        self.state = state
        self.cells = cells
        self.max_iterations = max_iterations

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        stages = {"sample": self.sample, "csp": self.csp, "process": self.process,
                  "label": self.label, "train": self.train}
        while not self.state.final_done:
            if self._stopping():
                return self._stopped()
            if self.state.converged:
                finished = self.final()
            else:
                finished = stages[self.state.stage](self.state.iteration)
            if not finished:
                return self._stopped()
        if self.comm.is_root:
            log.info("campaign finished: %s", self.paths.final / "hull.csv")
        return 0

    def _stopping(self) -> bool:
        return bool(self.comm.bcast(shutdown.requested() if self.comm.is_root else None))

    def _stopped(self) -> int:
        if self.comm.is_root:
            save_state(self.paths.root, self.state)
            log.warning("stopped at iteration %d, stage %s; run the same command to resume",
                        self.state.iteration, self.state.stage)
        return EXIT_STOPPED

    def _commit(self, **changes) -> None:
        """Apply state changes on the root, save, and give every rank the new state."""
        if self.comm.is_root:
            for name, value in changes.items():
                setattr(self.state, name, value)
            save_state(self.paths.root, self.state)
        self.state = self.comm.bcast(self.state)

    def _elemental_cells(self) -> list[Cell]:
        """The smallest cell of each pure element: every hull needs its corners. An element the
        search space leaves out (``include_subsystems: false``) gets a cell of the smallest
        allowed size, so that it is sampled, relaxed and labelled like the others."""
        smallest = {}
        for cell in self.cells:
            if len(cell.counts) == 1 and (cell.formula not in smallest
                                          or cell.units < smallest[cell.formula].units):
                smallest[cell.formula] = cell
        size = max(1, self.config.compositions.min_atoms_per_cell)
        for symbol in self.config.elements:
            if symbol not in smallest:
                smallest[symbol] = Cell(counts=((symbol, size),), formula=symbol, units=size)
        return list(smallest.values())

    def _reference_structures(self) -> list:
        """The given elemental reference structures (``references.structures``), labelled with
        the initial structures."""
        import ase.io

        out = []
        for symbol, path in self.config.references.structures.items():
            atoms = ase.io.read(path)
            atoms.calc = None
            atoms.info = {"structure_id": REFERENCE_ID - self.config.elements.index(symbol)}
            out.append(atoms)
        return out

    # -- iteration 0: random structures --------------------------------------------------------

    def sample(self, k: int) -> bool:
        from .csp_stage import generate_chunk

        target = self.paths.sample()
        if self.comm.is_root:
            self.paths.iteration(0).mkdir(parents=True, exist_ok=True)
        exists = self.comm.bcast(target.exists() if self.comm.is_root else None)
        if not exists:
            chunks = None
            if self.comm.is_root:
                chunks = plan_chunks(self.cells, 0, self.config.search.initial_structures,
                                     self.config.relax.chunk_size, self.config.seed,
                                     leading=self._elemental_cells())
            from ..parallel.tasks import run_dynamic

            done = run_dynamic(self.comm, chunks, lambda chunk: generate_chunk(self.config, chunk)[0])
            if self.comm.is_root:
                import ase.io

                structures = [a for _, batch in sorted(done, key=lambda d: d[0].index) for a in batch]
                structures += self._reference_structures()
                tmp = target.with_name(target.name + ".tmp")
                ase.io.write(tmp, structures, format="extxyz")
                tmp.replace(target)
                log.info("initial sampling: %d random structures in %s", len(structures), target)
        self._commit(stage="label")
        return True

    # -- CSP stage: generate and relax with the current model ----------------------------------

    def csp(self, k: int) -> bool:
        from ..parallel.tasks import run_dynamic
        from .csp_stage import CSPWorker

        config, search = self.config, self.config.search
        chunks = None
        if self.comm.is_root:
            self.paths.make(k)
            chunks = plan_chunks(self.cells, k, search.structures_per_iteration,
                                 config.relax.chunk_size, config.seed, leading=self._elemental_cells())
        totals = {"structures": 0, "unphysical": 0, "not_converged": 0, "steps": 0, "chunks": 0,
                  "seconds": 0.0}
        start = time.monotonic()
        last_report = [start]

        def on_result(chunk, summary, rank):
            totals["chunks"] += 1
            for name in ("structures", "unphysical", "not_converged", "steps", "seconds"):
                totals[name] += getattr(summary, name)
            now = time.monotonic()
            if now - last_report[0] > 10 or totals["chunks"] == len(chunks):
                last_report[0] = now
                rate = totals["structures"] / max(now - start, 1e-9)
                left = (search.structures_per_iteration - totals["structures"]) / max(rate, 1e-9)
                log.info("iteration %d CSP: %d/%d structures (%.1f/s, %.0f%% unphysical), "
                         "~%.0f s left", k, totals["structures"], search.structures_per_iteration,
                         rate, 100 * totals["unphysical"] / max(totals["structures"], 1), left)

        def should_stop():
            return shutdown.requested() or totals["unphysical"] >= search.b_max

        from ..parallel.devices import select_device
        device = select_device(config.model.device, self.comm, config.parallel.ranks_per_gpu)
        worker = CSPWorker(config, self.paths, self.paths.model(k - 1), device=device)
        run_dynamic(self.comm, chunks, worker, on_result, root_works=config.parallel.root_works,
                    should_stop=should_stop)
        if self._stopping():
            return False
        if self.comm.is_root:
            record = self.state.record(k)
            record.structures_relaxed = totals["structures"]
            record.unphysical = totals["unphysical"]
            record.not_converged = totals["not_converged"]
            record.relax_seconds = totals["seconds"]
            record.relax_steps_mean = totals["steps"] / max(totals["structures"], 1)
            if totals["unphysical"] >= search.b_max:
                log.info("iteration %d: B_max = %d unphysical structures reached, CSP stage ends",
                         k, search.b_max)
        self._commit(stage="process")
        return True

    # -- processing and selection --------------------------------------------------------------

    def process(self, k: int) -> bool:
        from .csp_stage import read_iteration_results
        from .processing import select_for_labelling, write_selection

        if self.comm.is_root:
            results = read_iteration_results(self.paths, k, self.config.elements, self.config.pressure)
            missing = self.state.record(k - 1).missing_elements if k > 0 else []
            if missing:
                log.info("iteration %d: the labels' hull lacks %s; labelling %s structures again",
                         k, ", ".join(missing), ", ".join(missing))
            selection = select_for_labelling(self.config, results, k, required=missing)
            write_selection(self.paths.selection(k), results, selection)
            self.state.record(k).selected = len(selection.ids)
            log.info("iteration %d: %d relaxed, %d distinct, %d unphysical; selected %d for labelling "
                     "(model hull: %s)", k, len(results), selection.n_distinct, selection.n_unphysical,
                     len(selection.ids), ", ".join(selection.hull_phases) or "-")
        self._commit(stage="label")
        return True

    # -- labelling -------------------------------------------------------------------------------

    def label(self, k: int) -> bool:
        from ..label.runner import label_structures
        from .processing import read_selection

        structures = None
        if self.comm.is_root:
            if k == 0:
                import ase.io

                structures = [(int(a.info["structure_id"]), a)
                              for a in ase.io.read(self.paths.sample(), ":", format="extxyz")]
            else:
                structures = read_selection(self.paths.selection(k))
        summary = label_structures(self.comm, structures, self.config.labeller, str(self.paths.labels),
                                   should_stop=shutdown.requested, source="initial" if k == 0 else
                                   f"iteration {k}", iteration=k, root_works=self.config.parallel.root_works)
        if k == 0 and self.config.search.seeds and not self._stopping():
            from .seeds import label_seeds
            label_seeds(self.comm, self.config, self.paths.labels, should_stop=shutdown.requested)
        if self._stopping():
            return False
        if self.comm.is_root:
            record = self.state.record(k)
            record.labelled += summary.labelled
            record.label_failures += summary.failed
            record.label_seconds += float(sum(summary.seconds))
            record.label_evaluations += int(summary.evaluations)
            record.label_core_seconds += float(summary.core_seconds)
            log.info("iteration %d labels: %s", k, summary.text().replace("\n", "; "))
        if k > 0:
            validation = self.comm.root_then_bcast(lambda: self._learning_curve(k))
            if self.comm.is_root and validation:
                self.state.record(k).validation = validation
        self._commit(stage="train")
        return True

    def _learning_curve(self, k: int) -> dict:
        """Errors of model k−1 on the labels of iteration k (paper Figs. 3a-c, 5a-c)."""
        from ..data.store import FrameStore
        from ..model.potential import ACNN
        from ..train.metrics import evaluate_errors

        with FrameStore(self.paths.labels, mode="r") as store:
            usable = usable_labels(store, self.config.training.max_label_force)
            indices = np.flatnonzero((store.column("iteration") == k) & usable)
            if len(indices) == 0:
                return {}
            model = ACNN.load(self.paths.model(k - 1))
            errors = evaluate_errors(model, store, indices=indices)
        log.info("iteration %d: model %d on the new labels: %s", k, k - 1, _errors_text(errors))
        return {key: float(value) for key, value in errors.items() if np.isscalar(value)}

    # -- training and the phase diagram ----------------------------------------------------------

    def train(self, k: int) -> bool:
        from ..train.api import train_model

        out = self.paths.train_dir(k)
        order, held_out = self.comm.root_then_bcast(
            lambda: training_split(self.paths.labels, self.config.training))
        result = train_model(self.config, str(self.paths.labels), out, self.comm, resume=True,
                             indices=order, valid_indices=held_out,
                             refine_from=self.paths.model(k - 1) if k > 0 else None,
                             continue_schedule_from=self.paths.train_dir(k - 1) if k > 0 else None,
                             should_stop=shutdown.requested)
        if result.stopped or self._stopping():
            return False
        if self.comm.is_root:
            tmp = self.paths.model(k).with_suffix(".tmp")
            shutil.copyfile(result.model_path, tmp)
            tmp.replace(self.paths.model(k))
            record = self.state.record(k)
            valid = result.metrics.get("valid") or {}
            record.training = {key: float(v) for key, v in valid.items() if np.isscalar(v)}
            log.info("iteration %d: model %d trained (%d frames): %s", k, k, result.n_train,
                     _errors_text(valid))
            self._update_hull(k)
        converged = self.comm.bcast(self.state.converged if self.comm.is_root else None)
        self._commit(iteration=k + 1, stage="csp", converged=converged)
        return True

    def _update_hull(self, k: int) -> None:
        """The labeller's hull after iteration k; convergence bookkeeping (root only)."""
        from .processing import hull_changed, labels_hull, write_hull_files

        label_hull, hull = labels_hull(self.config, self.paths.labels)
        write_hull_files(self.paths.iteration(k), label_hull, hull,
                         title=f"{self.config.name}: iteration {k}")
        record = self.state.record(k)
        record.hull = label_hull.phases
        record.missing_elements = label_hull.missing
        previous = [r for r in self.state.history if r.iteration == k - 1]
        if label_hull.missing:
            log.warning("iteration %d: no label of %s yet (its labels failed, or none was made); the "
                        "hull covers the other elements, %s structures are labelled again next "
                        "iteration (references.structures / references.enthalpies give them)", k,
                        ", ".join(label_hull.missing), ", ".join(label_hull.missing))
            self.state.stable_streak = 0
        elif k > 0 and previous and not hull_changed(previous[0].hull, record.hull,
                                                     self.config.search.hull_tolerance):
            self.state.stable_streak += 1
        else:
            self.state.stable_streak = 0
        log.info("iteration %d hull: %s (unchanged for %d iteration(s))", k,
                 ", ".join(f"{p['formula']} {p['formation_enthalpy_meV']:.0f} meV/atom"
                           for p in label_hull.phases), self.state.stable_streak)
        if self.state.stable_streak >= self.config.search.converge_iterations:
            log.info("phase diagram converged after iteration %d", k)
            self.state.converged = True
        elif k >= self.max_iterations:
            log.info("iteration limit %d reached", self.max_iterations)
            self.state.converged = True

    # -- final stage -----------------------------------------------------------------------------

    def final(self) -> bool:
        from ..label.runner import label_structures

        structures = None
        if self.comm.is_root:
            structures = self._final_candidates()
            log.info("final stage: relaxing %d near-hull structures with the labeller", len(structures))
        relaxed = self.paths.final / "relaxed.h5"
        summary = label_structures(
            self.comm, structures, self.config.labeller, str(relaxed), mode="relax",
            pressure_gpa=self.config.pressure, fmax=max(self.config.relax.fmax, 0.01),
            should_stop=shutdown.requested, source="final", iteration=self.state.iteration,
            root_works=self.config.parallel.root_works)
        if self._stopping():
            return False
        if self.comm.is_root:
            self.state.final_relaxed += summary.labelled
            self.state.final_failed += summary.failed
            self.state.final_evaluations += int(summary.evaluations)
            self.state.final_core_seconds += float(summary.core_seconds)
            self._final_hull(relaxed)
        self._commit(final_done=True)
        return True

    def _final_hull(self, relaxed: Path) -> None:
        """The final hull: the labeller's relaxations, and the single points of the structures
        whose relaxation failed or was not asked for (root only)."""
        from .processing import RELAXED, labels_hull, write_hull_files

        label_hull, hull = labels_hull(self.config, self.paths.labels, relaxed)
        n_relaxed = int((label_hull.sources == RELAXED).sum())
        if n_relaxed == 0:
            log.warning("final stage: no relaxation by the labeller ended with labels (%d failed, see "
                        "%s.failures.jsonl); the final hull is the single-point hull", self.state.final_failed,
                        relaxed)
            self.state.final_hull_source = "single points (every final relaxation failed)"
        else:
            self.state.final_hull_source = (f"{n_relaxed} final relaxations with the labeller "
                                            "and the single points of structures not relaxed")
        if label_hull.missing:
            log.warning("final hull without %s: no label of it (give references.enthalpies or "
                        "references.structures)", ", ".join(label_hull.missing))
        write_hull_files(self.paths.final, label_hull, hull, title=f"{self.config.name}: final")
        log.info("final hull: %s", ", ".join(
            f"{p['formula']} ({p['space_group']}, {p['source']}) {p['formation_enthalpy_meV']:.0f} meV/atom"
            for p in label_hull.phases))

    def _final_candidates(self) -> list:
        """Top-K labelled structures by E_hull within the window, every composition's best first."""
        from ..data.store import FrameStore
        from .processing import labels_hull

        label_hull, _ = labels_hull(self.config, self.paths.labels)
        window = self.config.search.ehull_window / 1000.0
        e_hull, frames = label_hull.e_hull, label_hull.frames

        def eligible(row) -> bool:
            return frames[row] >= 0 and e_hull[row] <= window   # a labelled frame (NaN: no hull)

        best = sorted((int(r) for r in label_hull.best if eligible(r)), key=lambda r: (e_hull[r], r))
        taken = set(best)
        order = np.argsort(e_hull, kind="stable")
        chosen = best + [int(r) for r in order if eligible(r) and int(r) not in taken]
        chosen = chosen[: max(self.config.search.final_top_k, len(self.config.elements))]
        if not chosen:
            return []
        with FrameStore(self.paths.labels, mode="r") as store:
            atoms_list = store.read([int(frames[r]) for r in chosen])
        out, seen = [], set()
        for atoms in atoms_list:
            structure_id = int(atoms.info.get("structure_id", -1))
            if structure_id not in seen:
                seen.add(structure_id)
                atoms.calc = None
                out.append((structure_id, atoms))
        return out


def _errors_text(errors: dict) -> str:
    parts = []
    for key, unit in (("energy_rmse", "meV/atom"), ("force_rmse", "meV/Å"), ("stress_rmse", "GPa")):
        if key in errors and errors[key] is not None and np.isfinite(errors[key]):
            parts.append(f"{key.split('_')[0]} RMSE {errors[key]:.3g} {unit}")
    return ", ".join(parts) or "-"
