"""Settings of the ``labeller:`` section of a campaign file, validated without pydantic.

:class:`LabellerSettings` lists every field with its type and default (docs/labelling.md explains
them). :func:`settings_from_dict` accepts the YAML mapping (or the campaign's pydantic section, via
its ``model_dump()``), drops ``None`` values (unset in the campaign model), checks types and
unknown keys, and resolves relative paths against ``base_dir`` (the YAML file's folder).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import UserError

KINDS = ("ase", "chgnet", "cp2k", "command")
FAILURE_KINDS = ("timeout", "crash", "missing_output", "not_converged", "invalid", "error")
KEEP_FILES = ("all", "failed", "none")
OPTIMIZERS = ("BFGS", "FIRE", "LBFGS")
RELAX_DRIVERS = ("auto", "code", "ase")


@dataclass
class LabellerSettings:
    """Every setting of every labeller kind (a kind ignores the ones it does not use)."""

    # -- all kinds ---------------------------------------------------------------------------
    kind: str = "ase"
    timeout: float = 3600.0            # s per attempt (external processes are killed after it)
    retries: int = 2                   # extra attempts after a failure whose kind is in retry_on
    retry_on: list = field(default_factory=lambda: ["timeout", "crash", "missing_output", "error"])
    workdir: Optional[str] = None      # per-structure directories (default: beside the output)
    keep_files: str = "failed"         # all | failed | none: which directories to keep
    inherit_mpi_env: bool = False      # pass the launcher's MPI rank variables to child processes
    env: dict = field(default_factory=dict)   # extra environment for child processes
    log_tail_lines: int = 40           # lines of output kept with a failure
    require_stress: bool = True        # a label without stress is a failure
    kpoint_spacing: float = 0.03       # 2π × this, Å⁻¹ (paper: 0.03 for SCF); cp2k/command
    gamma_centered: bool = True        # k-point mesh centred at Γ (cp2k: even counts raised to odd)
    # DFT job layout (external kinds): concurrent calculations and their cores (label/layout.py)
    jobs_per_node: Optional[int] = None    # calculations at once per node (default 1, or by cores_per_job)
    cores_per_job: Optional[int] = None    # {cores} of each (default: the node's cores / jobs_per_node)
    nodes_per_job: int = 1                 # {nodes}: nodes per calculation (> 1: multi-node runs)
    cores_per_node: Optional[int] = None   # default: the job's ranks on that node
    max_jobs: Optional[int] = None         # cap on concurrent calculations in total
    # relaxation (final stage): the code's own optimizer where the labeller has one (relax_driver
    # auto/code), else an ASE optimizer on a FrechetCellFilter at the target pressure
    relax_driver: str = "auto"         # auto | code | ase
    relax_optimizer: str = "BFGS"
    relax_timeout: Optional[float] = None  # s for a whole relaxation (default 10 × timeout)
    # -- ase / chgnet --------------------------------------------------------------------------
    calculator: Optional[str] = None   # import path, e.g. ase.calculators.emt.EMT
    parameters: dict = field(default_factory=dict)   # calculator keyword arguments / input settings
    isolate: bool = False              # ase: run each calculation in a child process (timeout, env)
    model: Optional[str] = None        # chgnet: model name or checkpoint path (default: pretrained)
    device: str = "cpu"                # chgnet: torch device
    # -- cp2k ----------------------------------------------------------------------------------
    command: Optional[str] = None      # cp2k: cp2k_shell command; command: the run template
    functional: str = "PBE"
    cutoff: float = 400.0              # Ry, finest grid
    rel_cutoff: float = 50.0           # Ry
    basis_set: str = "DZVP-MOLOPT-SR-GTH"
    basis_set_file: str = "BASIS_MOLOPT"
    potential_file: str = "GTH_POTENTIALS"
    pseudo_potential: str = "auto"
    max_scf: int = 50
    smearing_temperature: Optional[float] = None   # K, Fermi-Dirac (metals); None: no smearing
    added_mos: int = 20                # unoccupied orbitals with smearing
    inp: str = ""                      # extra CP2K input merged into the generated one
    # -- command -------------------------------------------------------------------------------
    input_format: Optional[str] = None     # vasp | espresso-in | cp2k | any ase.io format
    output_format: Optional[str] = None    # vasp-out | vasp-xml | espresso-out | cp2k | ase.io fmt
    input_file: Optional[str] = None
    output_file: Optional[str] = None
    copy_files: list = field(default_factory=list)   # copied into each calculation directory
    failure_patterns: list = field(default_factory=list)   # regexes in the output: not converged
    success_patterns: list = field(default_factory=list)   # regexes that must be in the output

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TYPES: dict[str, tuple] = {
    "kind": (str,), "timeout": (int, float), "retries": (int,), "retry_on": (list,),
    "workdir": (str,), "keep_files": (str,), "inherit_mpi_env": (bool,), "env": (dict,),
    "log_tail_lines": (int,), "require_stress": (bool,), "kpoint_spacing": (int, float),
    "gamma_centered": (bool,), "jobs_per_node": (int,), "cores_per_job": (int,),
    "nodes_per_job": (int,), "cores_per_node": (int,), "max_jobs": (int,),
    "relax_driver": (str,), "relax_optimizer": (str,), "relax_timeout": (int, float),
    "calculator": (str,), "parameters": (dict,), "isolate": (bool,), "model": (str,),
    "device": (str,), "command": (str,), "functional": (str,), "cutoff": (int, float),
    "rel_cutoff": (int, float), "basis_set": (str,), "basis_set_file": (str,),
    "potential_file": (str,), "pseudo_potential": (str,), "max_scf": (int,),
    "smearing_temperature": (int, float), "added_mos": (int,), "inp": (str,),
    "input_format": (str,), "output_format": (str,), "input_file": (str,), "output_file": (str,),
    "copy_files": (list,), "failure_patterns": (list,), "success_patterns": (list,),
}


def settings_from_dict(data: Any, *, base_dir: Optional[str] = None,
                       where: str = "labeller") -> LabellerSettings:
    """Validate a ``labeller:`` mapping into :class:`LabellerSettings` (UserError on problems)."""
    if isinstance(data, LabellerSettings):
        return data
    if hasattr(data, "model_dump"):
        data = data.model_dump()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{where}: must be a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(LabellerSettings)}
    problems = []
    values = {}
    for key, value in data.items():
        if key not in known:
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
            continue
        if value is None:
            continue
        types = _TYPES[key]
        if isinstance(value, bool) and bool not in types:
            problems.append(f"{where}.{key} = {value!r}: expected {types[0].__name__}")
            continue
        if not isinstance(value, types):
            problems.append(f"{where}.{key} = {value!r}: expected {types[0].__name__}")
            continue
        values[key] = float(value) if float in types and not isinstance(value, bool) else value
    if problems:
        raise UserError("; ".join(problems))
    settings = LabellerSettings(**values)
    if base_dir is not None:
        def resolve(path: str) -> str:
            path = os.path.expanduser(path)
            return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))

        if settings.workdir:
            settings.workdir = resolve(settings.workdir)
        settings.copy_files = [resolve(p) for p in settings.copy_files]
    _check(settings, problems, where)
    if problems:
        raise UserError("; ".join(problems))
    return settings


def _check(s: LabellerSettings, problems: list, where: str) -> None:
    def bad(key, message):
        problems.append(f"{where}.{key} = {getattr(s, key)!r}: {message}")

    if s.kind not in KINDS:
        bad("kind", f"must be one of {', '.join(KINDS)}")
    if not s.timeout > 0:
        bad("timeout", "must be > 0 seconds")
    if s.retries < 0:
        bad("retries", "must be >= 0")
    unknown = [k for k in s.retry_on if k not in FAILURE_KINDS]
    if unknown:
        bad("retry_on", f"unknown failure kind(s) {unknown}; known: {', '.join(FAILURE_KINDS)}")
    if s.keep_files not in KEEP_FILES:
        bad("keep_files", f"must be one of {', '.join(KEEP_FILES)}")
    if not s.kpoint_spacing > 0:
        bad("kpoint_spacing", "must be > 0 (in units of 2π Å⁻¹)")
    for key in ("jobs_per_node", "cores_per_job", "cores_per_node", "max_jobs"):
        if getattr(s, key) is not None and getattr(s, key) < 1:
            bad(key, "must be >= 1 (or left out for the default)")
    if s.nodes_per_job < 1:
        bad("nodes_per_job", "must be >= 1")
    if s.nodes_per_job > 1 and s.jobs_per_node not in (None, 1):
        bad("jobs_per_node", "must be 1 (or left out) when nodes_per_job > 1")
    if s.relax_driver not in RELAX_DRIVERS:
        bad("relax_driver", f"must be one of {', '.join(RELAX_DRIVERS)}")
    if s.relax_optimizer.upper() not in OPTIMIZERS:
        bad("relax_optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if s.relax_timeout is not None and not s.relax_timeout > 0:
        bad("relax_timeout", "must be > 0 seconds")
    if s.log_tail_lines < 0:
        bad("log_tail_lines", "must be >= 0")
    if s.cutoff <= 0 or s.rel_cutoff <= 0:
        bad("cutoff", "cutoff and rel_cutoff must be > 0 Ry")
    if s.max_scf < 1:
        bad("max_scf", "must be >= 1")
    if any(not isinstance(v, (str, int, float)) for v in s.env.values()):
        bad("env", "values must be strings or numbers")
    if s.kind == "ase" and not s.calculator:
        problems.append(f"{where}: kind 'ase' needs `calculator`, an import path such as "
                        "ase.calculators.emt.EMT")
    if s.kind == "command":
        if not s.command:
            problems.append(f"{where}: kind 'command' needs `command`, a template such as "
                            "'mpirun -n 64 pw.x -in {input} > {output}'")
        if not s.input_format:
            problems.append(f"{where}: kind 'command' needs `input_format` "
                            "(vasp, espresso-in, cp2k or an ase.io format such as extxyz)")
    for path in s.copy_files:
        if not os.path.exists(path):
            problems.append(f"{where}.copy_files: {path} does not exist")
