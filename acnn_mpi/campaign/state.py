"""The campaign's persistent state: which stage of which iteration is done, written atomically.

The state file is the single source of truth for resuming. A stage writes its outputs first (in
shards that record what they hold, or atomically by rename) and only then is the state advanced,
so a kill at any moment leaves either the old state with partial, resumable outputs or the new state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
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
    hull: list[dict[str, Any]] = field(default_factory=list)      # stable phases (labeller hull; at
    #                                                               the lowest pressure if several)
    missing_elements: list[str] = field(default_factory=list)     # elements the hull lacked
    hulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # pressure key -> phases
    by_pressure: dict[str, dict[str, float]] = field(default_factory=dict)  # pressure key -> CSP counts


@dataclass
class CampaignState:
    """Where a campaign stands. ``stage`` is the next stage to run in ``iteration``."""

    iteration: int = 0
    stage: str = "sample"
    converged: bool = False
    final_done: bool = False
    stable_streak: int = 0            # iterations the hull is unchanged (several pressures: the least)
    stable_streaks: dict[str, int] = field(default_factory=dict)   # pressure key -> its streak
    pressures_gpa: list[float] = field(default_factory=list)       # the campaign's (set at its start)
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


def pressure_key(pressure_gpa: float) -> str:
    """The key of one pressure in the state's per-pressure dicts: '100', '12.5'."""
    return f"{float(pressure_gpa):g}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never a torn one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    from ..errors import naming_file

    try:
        with naming_file(path), open(tmp, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:  # a full disk leaves the old file and no torn temporary
        if tmp.exists():
            tmp.unlink()


def save_state(directory: Path, state: CampaignState) -> None:
    write_json_atomic(Path(directory) / STATE_FILE, asdict(state))


def load_state(directory: Path) -> CampaignState:
    """The saved state of the campaign in ``directory``, or a fresh one if there is none.

    Raises:
        UserError: the file is damaged (empty, torn, not JSON, wrong types) or of another format;
            the message names it and how to go on. A damaged state is never replaced silently.
    """
    from ..errors import UserError

    path = Path(directory) / STATE_FILE
    if not path.exists():
        return CampaignState()

    def damaged(what: str) -> UserError:
        return UserError(f"{path} is damaged ({what}): move it away (mv {path} {path}.bad) to restart "
                         "the campaign from iteration 0 reusing the files already written, or put "
                         "back a copy")

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the campaign state ({error.strerror})") from None
    if not text.strip():
        raise damaged("empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise damaged(f"not valid JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise damaged(f"a JSON {type(data).__name__} instead of an object")
    if data.get("version") != FORMAT_VERSION:
        raise UserError(f"{path} has state format {data.get('version')!r}, this acnn_mpi reads "
                        f"{FORMAT_VERSION}: finish the campaign with the version that started it")
    problem = _type_problem(CampaignState, data, "")
    if problem is None and data.get("stage") not in STAGES:
        problem = f"stage = {data.get('stage')!r} is none of {', '.join(STAGES)}"
    if problem is None and (data.get("iteration", 0) < 0 or data.get("stable_streak", 0) < 0):
        problem = "a negative iteration or streak"
    if problem is not None:
        raise damaged(problem)
    history = [IterationRecord(**entry) for entry in data.pop("history", [])]
    return CampaignState(history=history, **data)


def _type_problem(cls, data: dict, where: str) -> str | None:
    """What in ``data`` does not fit the dataclass ``cls`` (unknown key, wrong type), or None."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if required and spec.name not in data:
            return f"{where}{spec.name} is missing"
    for key, value in data.items():
        if key not in hints:
            return f"unknown entry {where}{key}"
        problem = _value_problem(hints[key], value, f"{where}{key}")
        if problem is not None:
            return problem
    return None


def _value_problem(hint, value, where: str) -> str | None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            return f"{where} = {value!r} is not an object"
        return _type_problem(hint, value, f"{where}.")
    if hint is Any:
        return None
    if origin in (list, dict):
        if not isinstance(value, origin):
            return f"{where} = {value!r} is not a {origin.__name__}"
        items = enumerate(value) if origin is list else value.items()
        for key, item in items:
            problem = _value_problem(args[-1], item, f"{where}[{key!r}]") if args else None
            if problem is not None:
                return problem
        return None
    kinds = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}.get(hint, (object,))
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, kinds):
        return f"{where} = {value!r} is not a{'n' if hint is int else ''} {hint.__name__}"
    return None
