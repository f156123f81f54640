"""The campaign's persistent state: which stage of which iteration is done, written atomically.

The state file is the single source of truth for resuming. A stage writes its outputs first (in
shards that record what they hold, or atomically by rename) and only then is the state advanced,
so a kill at any moment leaves either the old state with partial, resumable outputs or the new state.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
FORMAT_VERSION = 1

#: Stages of one iteration, in order. Iteration 0 is the initial sampling (no CSP).
STAGES = ("sample", "label", "train", "csp", "process", "done")


@dataclass
class IterationRecord:
    """What one iteration produced, for reports and convergence."""

    iteration: int
    structures_relaxed: int = 0
    unphysical: int = 0
    not_converged: int = 0
    relax_seconds: float = 0.0
    relax_steps_mean: float = 0.0
    selected: int = 0
    labelled: int = 0
    label_failures: int = 0
    label_seconds: float = 0.0
    label_evaluations: int = 0        # labeller evaluations (single points, failed attempts too)
    label_core_seconds: float = 0.0   # core·s of those evaluations
    validation: dict[str, float] = field(default_factory=dict)   # model n-1 on labels of n
    training: dict[str, float] = field(default_factory=dict)     # final validation of model n
    hull: list[dict[str, Any]] = field(default_factory=list)      # stable phases (labeller hull)
    missing_elements: list[str] = field(default_factory=list)     # elements the hull lacked


@dataclass
class CampaignState:
    """Where a campaign stands. ``stage`` is the next stage to run in ``iteration``."""

    iteration: int = 0
    stage: str = "sample"
    converged: bool = False
    final_done: bool = False
    stable_streak: int = 0
    final_relaxed: int = 0            # final-stage relaxations by the labeller that ended with labels
    final_failed: int = 0             # ... that failed
    final_evaluations: int = 0        # labeller evaluations of the final stage (every ionic step)
    final_core_seconds: float = 0.0
    final_hull_source: str = ""       # what the final hull was built from
    history: list[IterationRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def record(self, iteration: int) -> IterationRecord:
        """The record of ``iteration``, created when first asked for."""
        for entry in self.history:
            if entry.iteration == iteration:
                return entry
        entry = IterationRecord(iteration=iteration)
        self.history.append(entry)
        return entry

    def advance(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage = stage


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never a torn one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_state(directory: Path, state: CampaignState) -> None:
    write_json_atomic(Path(directory) / STATE_FILE, asdict(state))


def load_state(directory: Path) -> CampaignState:
    """The saved state of the campaign in ``directory``, or a fresh one if there is none."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return CampaignState()
    data = json.loads(path.read_text())
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has state format {data.get('version')}, this acnn_mpi reads "
                         f"{FORMAT_VERSION}: finish the campaign with the version that started it")
    history = [IterationRecord(**entry) for entry in data.pop("history", [])]
    return CampaignState(history=history, **data)
