"""The self-optimizing loop (paper §II.B, Fig. 2; SPEC §9), run by every rank in lock step.

Iteration 0 samples N₀ random structures, labels them and trains the first model. Iteration k ≥ 1
relaxes random structures with model k−1 on all ranks (until B_max unphysical ones or the budget),
processes them (dedup, hull, C_max/L_max selection), labels the selection, measures model k−1 on
those labels (the learning curve), refines model k on all labels, and updates the phase diagram.
The loop stops when the hull has not changed for ``converge_iterations`` iterations or at
``max_iterations``; then the top-K near-hull structures are relaxed with the labeller.

A campaign over several pressures (``pressure: [p1, p2, ...]``) does the CSP, processing, hull,
convergence and final steps once per pressure (:attr:`Controller.views`, campaign/pressures.py)
with one label store and one model; it has converged when every pressure's hull has.

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
from .pressures import PressureView, pressure_views
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
    state = comm.root_then_bcast(lambda: _start_state(config, paths))
    # campaigns from before the relaxation service searched one pressure
    comm.root_then_bcast(lambda: upgrade_relax_dirs(paths, state.iteration, config.pressures_gpa[0]))
    cells = comm.root_then_bcast(lambda: search_cells(compositions_from_config(config)))
    limit = config.search.max_iterations if max_iterations is None else max_iterations
    if comm.is_root:
        log.info("campaign %s: %s at %s GPa, %d cells, %d rank(s), output %s; resuming at "
                 "iteration %d, stage %s", config.name, "-".join(config.elements),
                 ", ".join(f"{p:.4g}" for p in config.pressures_gpa), len(cells), comm.size,
                 paths.root, state.iteration, state.stage)
    return Controller(config, comm, paths, state, cells, limit).run()


def _start_state(config, paths: CampaignPaths) -> CampaignState:
    """Root: the saved state (its pressures must be the campaign's) with the pressures recorded,
    and the resolved configuration written beside it (``campaign.resolved.yaml``)."""
    from ..config import resolved_yaml
    from ..errors import UserError

    state = load_state(paths.root)
    if state.pressures_gpa and state.pressures_gpa != config.pressures_gpa:
        raise UserError(f"{paths.root} was started at pressure(s) {state.pressures_gpa} GPa, the campaign "
                        f"file gives {config.pressures_gpa}: put back the pressure, or give another "
                        "output_dir for a new campaign")
    state.pressures_gpa = list(config.pressures_gpa)
    tmp = paths.resolved_config.with_name(paths.resolved_config.name + ".tmp")
    tmp.write_text("# the campaign's settings with every default filled in (written by `run`)\n"
                   + resolved_yaml(config))
    tmp.replace(paths.resolved_config)
    return state


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
        #: one view per pressure (one, with the campaign's own paths, for a single pressure)
        self.views: list[PressureView] = pressure_views(config, paths)

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
            log.info("campaign finished: %s", ", ".join(str(v.paths.final / "hull.csv") for v in self.views))
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
        """The labeller's hull at every pressure after iteration k; convergence bookkeeping: the
        campaign converges when the hull of every pressure is unchanged (root only)."""
        from .processing import labels_hull, write_hull_files

        record = self.state.record(k)
        previous = [r for r in self.state.history if r.iteration == k - 1]
        for view in self.views:
            label_hull, hull = labels_hull(view.config, self.paths.labels)
            write_hull_files(view.paths.hull_dir(k), label_hull, hull,
                             title=f"{self.config.name}: iteration {k}{self._at(view)}")
            record.hulls[view.key] = label_hull.phases
            record.missing_elements = label_hull.missing   # labels alone decide: every pressure alike
            before = None
            if previous:  # (a state written before hulls per pressure has the first one's in hull)
                before = previous[0].hulls.get(view.key, previous[0].hull if view.index == 0 else None)
            self.state.stable_streaks[view.key] = self._streak(k, view, label_hull, before)
            log.info("iteration %d hull%s: %s (unchanged for %d iteration(s))", k, self._at(view),
                     ", ".join(f"{p['formula']} {p['formation_enthalpy_meV']:.0f} meV/atom"
                               for p in label_hull.phases), self.state.stable_streaks[view.key])
        record.hull = record.hulls[self.views[0].key]
        if record.missing_elements:
            log.warning("iteration %d: no label of %s yet (its labels failed, or none was made); the "
                        "hull covers the other elements, %s structures are labelled again next "
                        "iteration (references.structures / references.enthalpies give them)", k,
                        ", ".join(record.missing_elements), ", ".join(record.missing_elements))
        self.state.stable_streak = min(self.state.stable_streaks[v.key] for v in self.views)
        if self.state.stable_streak >= self.config.search.converge_iterations:
            log.info("phase diagram converged after iteration %d%s", k,
                     " at every pressure" if len(self.views) > 1 else "")
            self.state.converged = True
        elif k >= self.max_iterations:
            log.info("iteration limit %d reached", self.max_iterations)
            self.state.converged = True

    def _streak(self, k: int, view: PressureView, label_hull, before) -> int:
        """The iterations the hull at ``view``'s pressure has been unchanged, after iteration k."""
        from .processing import hull_changed

        if label_hull.missing or k == 0 or before is None:
            return 0
        if hull_changed(before, label_hull.phases, self.config.search.hull_tolerance):
            return 0
        return self.state.stable_streaks.get(view.key, self.state.stable_streak) + 1

    def _at(self, view: PressureView) -> str:
        """' at 100 GPa' in a campaign over several pressures, else nothing (log lines, titles)."""
        return f" at {view.pressure_gpa:g} GPa" if len(self.views) > 1 else ""

    def final_hull(self, view: PressureView) -> str:
        """The final hull at ``view``'s pressure: the labeller's relaxations, and the single points
        of the structures whose relaxation failed or was not asked for (root only). Returns what
        it was built from."""
        from .processing import RELAXED, labels_hull, write_hull_files

        relaxed = view.paths.final / "relaxed.h5"
        label_hull, hull = labels_hull(view.config, self.paths.labels, relaxed)
        n_relaxed = int((label_hull.sources == RELAXED).sum())
        if n_relaxed == 0:
            log.warning("final stage%s: no relaxation by the labeller ended with labels (%d failed, "
                        "see %s.failures.jsonl); the final hull is the single-point hull",
                        self._at(view), self.state.final_failed, relaxed)
            source = "single points (every final relaxation failed)"
        else:
            source = (f"{n_relaxed} final relaxations with the labeller "
                      "and the single points of structures not relaxed")
        if label_hull.missing:
            log.warning("final hull without %s: no label of it (give references.enthalpies or "
                        "references.structures)", ", ".join(label_hull.missing))
        write_hull_files(view.paths.final, label_hull, hull, title=f"{self.config.name}: final{self._at(view)}")
        log.info("final hull%s: %s", self._at(view), ", ".join(
            f"{p['formula']} ({p['space_group']}, {p['source']}) {p['formation_enthalpy_meV']:.0f} meV/atom"
            for p in label_hull.phases))
        return source

    def compare_pressures(self) -> None:
        """``final/enthalpy_vs_pressure.csv|png`` from the final hulls (several pressures; root only)."""
        import json

        from .pressures import write_pressure_summary

        if len(self.views) < 2:
            return
        hulls = {v.pressure_gpa: json.loads((v.paths.final / "hull.json").read_text()) for v in self.views}
        write_pressure_summary(self.paths.final_root, hulls, title=f"{self.config.name}: phases against pressure")

    def final_candidates(self, view: PressureView) -> list:
        """Top-K labelled structures by E_hull at ``view``'s pressure within the window, every
        composition's best first."""
        from ..data.store import FrameStore
        from .processing import labels_hull

        label_hull, _ = labels_hull(view.config, self.paths.labels)
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
