"""The self-optimizing loop (paper §II.B, Fig. 2; SPEC §9), run by every rank in lock step.

Iteration 0 samples N₀ random structures, labels them and trains the first model. Iteration k ≥ 1
relaxes random structures with model k−1 on all ranks (until B_max unphysical ones or the budget),
processes them (dedup, hull, C_max/L_max selection), labels the selection, measures model k−1 on
those labels (the learning curve), refines model k on all labels, and updates the phase diagram.
The loop stops when the hull has not changed for ``converge_iterations`` iterations or at
``max_iterations``; then the top-K near-hull structures are relaxed with the labeller.

Each box of Fig. 2 is a stage object (campaign/stages.py: plan on the root, work on every rank,
commit on the root) and :meth:`Controller.run_stage` is the one place that runs them. The root
decides and saves the state after each stage; every rank reads it from the root. A stage is either
redone from its durable outputs (the relaxation shards, the label store, the training checkpoint)
or skipped, so a run killed at any moment resumes with nothing finished lost or redone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import shutdown
from .layout import CampaignPaths
from .plan import ITERATION_STRIDE, Cell, search_cells
from .state import CampaignState, load_state, save_state
from .training_set import usable_labels

log = logging.getLogger(__name__)

#: exit code of a run stopped by SIGTERM/SIGUSR1 before the campaign finished (resubmit to resume)
EXIT_STOPPED = 3

#: structure id of the given reference structure of element k (``references.structures``):
#: REFERENCE_ID - k, the top of iteration 0's id range, above every generated structure
REFERENCE_ID = ITERATION_STRIDE - 1


def run_campaign(config, comm, *, max_iterations: int | None = None) -> int:
    """Run or resume the campaign of ``config`` on every rank of ``comm``; 0 when finished."""
    from ..csp.compositions import compositions_from_config
    from .legacy import upgrade_relax_dirs

    paths = CampaignPaths(Path(config.output_dir))
    if comm.is_root:
        paths.make()
        _log_to_file(paths.log)
    comm.barrier()
    shutdown.install(margin_s=config.parallel.walltime_margin_s, comm=comm)
    state = comm.root_then_bcast(lambda: load_state(paths.root))
    comm.root_then_bcast(lambda: upgrade_relax_dirs(paths, state.iteration, config.pressure))
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
        """Fig. 2: sample → label → train, then (CSP → process → label → train) until the hull is
        converged, then the final relaxations."""
        from . import stages

        loop = {"sample": stages.Sample(self), "csp": stages.CSP(self), "process": stages.Process(self),
                "label": stages.Label(self), "train": stages.Train(self)}
        final = stages.Final(self)
        while not self.state.final_done:
            stage = final if self.state.converged else loop[self.state.stage]
            if self.stopping() or not self.run_stage(stage, self.state.iteration):
                return self._stopped()
        if self.comm.is_root:
            log.info("campaign finished: %s", self.paths.final / "hull.csv")
        return 0

    def run_stage(self, stage, k: int) -> bool:
        """plan on the root (its error raised on every rank), work on every rank, commit on the
        root and give every rank the new state; False when stopped before the commit."""
        from .stages import STOPPED

        plan = self._on_root(lambda: stage.plan(k))
        outcome = stage.work(k, plan)
        if self.stopping() or outcome is STOPPED:
            return False
        self._commit(**(self._on_root(lambda: stage.commit(k, plan, outcome)) or {}))
        return True

    def _on_root(self, function):
        """``function()`` on the root (its value there, None elsewhere); an error reaches every rank."""
        box = []
        self.comm.root_then_bcast(lambda: box.append(function()))
        return box[0] if box else None

    def stopping(self) -> bool:
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

    def elemental_cells(self) -> list[Cell]:
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

    def reference_structures(self) -> list:
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

    def learning_curve(self, k: int) -> dict:
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

    def update_hull(self, k: int) -> None:
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

    def final_hull(self, relaxed: Path) -> None:
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

    def final_candidates(self) -> list:
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
