"""What ``run`` would refuse, found before any work starts (``check`` and ``run`` both ask here).

The campaign file itself is validated by :func:`acnn_mpi.config.load_config`; this adds what needs
the machine: the labeller can be built (its calculator imports, its program is on PATH, the files
it names exist) and the campaign directory can be made.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def campaign_problems(config, *, output_setting: str = "output_dir") -> list[str]:
    """One line per thing about ``config`` that ``run`` would refuse (empty when it would start)."""
    problems = []
    problem = directory_problem(config.output_dir, output_setting, what="campaign directory")
    if problem:
        problems.append(problem)
    problems += labeller_problems(config.labeller)
    problems += resume_problems(config.output_dir)
    return problems


def resume_problems(directory) -> list[str]:
    """Damage in what a campaign directory holds that a resume reads first: the state, the label
    store (its header and commit count, not every row) and the files the next stage starts from
    (the training checkpoint, the previous model). Cheap: nothing is read in full."""
    from ..campaign.layout import CampaignPaths
    from ..campaign.state import load_state

    paths = CampaignPaths(Path(directory))
    if not paths.root.is_dir():
        return []
    problems = []
    try:
        state = load_state(paths.root)
    except UserError as error:
        return [str(error)]
    if paths.labels.exists():
        from ..data.store import FrameStore

        try:
            FrameStore(paths.labels, mode="r").close()
        except UserError as error:
            problems.append(str(error))
    k = state.iteration
    checkpoint = paths.train_dir(k) / "checkpoint.pt"
    if state.stage == "train" and not state.converged and checkpoint.is_file():
        from ..train.checkpoint import load_checkpoint

        try:
            load_checkpoint(checkpoint)
        except UserError as error:
            problems.append(str(error))
    if state.stage == "csp" and not state.converged and k > 0:
        problem = _model_problem(paths.model(k - 1))
        if problem:
            problems.append(problem)
    if state.stage in ("csp", "process") and not state.converged:
        from ..campaign.catalog import relax_dirs

        for relax_dir in relax_dirs(paths, k):  # iter_K/relax, or its P<p>/ folders (several pressures)
            problems += _shard_problems(relax_dir, redone=state.stage == "csp")
    return problems


def _shard_problems(relax_dir: Path, redone: bool) -> list[str]:
    """The first damaged shard of an iteration's CSP stage (its layout and columns are checked,
    not its rows); a shard moved away has its structures relaxed again while the CSP stage runs
    (``redone``), and is left out of the selection once it has ended."""
    from ..errors import DamagedFileError
    from ..relax.shards import RELAX_GROUP, list_shards, open_frames

    then = "its structures are relaxed again" if redone else "the selection is made without its structures"
    for path in map(Path, list_shards(relax_dir)):
        fix = f"move it away (mv {path} {path}.bad) and {then}"
        try:
            with open_frames(str(path), fix=fix) as (_, reader):
                if RELAX_GROUP not in reader.groups:
                    return [f"{path} is damaged (no relaxation columns): {fix}"]
        except DamagedFileError as error:
            return [str(error)]
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            return [f"{path} is damaged (not readable HDF5: {str(error).splitlines()[0]}): {fix}"]
    return []


def _model_problem(path: Path) -> str | None:
    from ..train.models import load_model

    fix = "put back a copy, or move the campaign's state.json away to restart from iteration 0"
    if not path.is_file():
        return f"{path} is missing, and the next stage relaxes with it: {fix}"
    try:
        load_model(path)
    except (ValueError, OSError) as error:
        return f"{path}: cannot load the model ({error}): {fix}"
    return None


def check_campaign(config, source: str, *, output_setting: str = "output_dir") -> None:
    """Raise a UserError listing :func:`campaign_problems` of the campaign file ``source``."""
    problems = campaign_problems(config, output_setting=output_setting)
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))


def labeller_problems(settings) -> list[str]:
    """Problems of the ``labeller:`` section that appear only when it is built (the labeller
    factory's own checks: calculator import, cp2k on PATH, ...) or run (the command's program)."""
    from ..label.factory import make_labeller

    problems = []
    try:
        labeller = make_labeller(settings)
    except UserError as error:
        problems.append(str(error))
    else:
        close = getattr(labeller, "close", None)
        if close is not None:
            close()
    if settings.kind == "ase" and settings.isolate and settings.calculator:
        problems += _isolated_calculator_problems(settings)
    problems += _validation_problems(settings)
    if settings.workdir:
        problem = directory_problem(settings.workdir, "labeller.workdir", what="working directory")
        if problem:
            problems.append(problem)
    if settings.kind == "chgnet" and settings.model and _looks_like_path(settings.model) \
            and not os.path.isfile(os.path.expanduser(settings.model)):
        problems.append(f"labeller.model = {settings.model!r}: no such checkpoint file "
                        "(give an existing file, or leave it out for the pretrained model)")
    return problems


def _isolated_calculator_problems(settings) -> list[str]:
    """An isolated calculator is imported by a child process; unless its environment changes the
    Python path, the module must be importable here too."""
    import importlib.util

    if "PYTHONPATH" in settings.env:
        return []
    module_name = settings.calculator.replace(":", ".").rpartition(".")[0]
    try:
        found = module_name and importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return []
    return [f"labeller.calculator = {settings.calculator!r}: no module {module_name!r} to import "
            "(check the import path, e.g. ase.calculators.emt.EMT)"]


def _validation_problems(settings) -> list[str]:
    """The labeller's own machine checks (label.validate): its programs on PATH, the command
    template's placeholders, pseudopotential and basis directories."""
    from ..label.validate import validate_labeller

    try:
        validate_labeller(settings)
    except UserError as error:
        return [str(error)]
    return []


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.endswith((".pt", ".pth", ".tar"))


def directory_problem(path, setting: str, *, what: str = "output directory") -> str | None:
    """Why ``path`` cannot be (made) a writable directory, naming ``setting``; None if it can.

    Nothing is created: an absent directory is fine when its nearest existing parent is a
    writable directory.
    """
    path = Path(os.path.expanduser(str(path)))
    if path.exists():
        if not path.is_dir():
            return f"{setting} {path}: exists and is not a directory; give a directory (or move the file)"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{setting} {path}: the {what} is not writable; choose another or fix its permissions"
        return None
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return (f"{setting} {path}: cannot create the {what}, {parent} is a file; "
                "choose another place")
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"{setting} {path}: cannot create the {what} in {parent} (not writable); "
                "choose another place")
    return None


def make_directory(path, setting: str, *, what: str = "output directory") -> Path:
    """Create ``path`` (and parents) or raise a one-line UserError naming ``setting``."""
    problem = directory_problem(path, setting, what=what)
    if problem:
        raise UserError(problem)
    path = Path(os.path.expanduser(str(path)))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{setting} {path}: cannot create the {what} ({error.strerror}); "
                        "choose another place") from None
    return path
