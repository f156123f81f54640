"""The typed campaign configuration: one YAML file, validated in one place.

Every section is a pydantic model that forbids unknown keys. Defaults are the paper's (SPEC §1-§10):
cutoffs 5.0/4.0 Å, n_r = 16, n_a = 14, l_max = 4, embedding [64, 64], fitting [256, 256], loss
prefactors p_e = p_w = 0.1 and p_f 10 → 0.1, learning rate ×0.97 every 10⁴ steps, 10⁵ steps per
iteration, N₀ = 500 initial structures, C_max = 300, L_max = 3. Pressures are GPa, lengths Å,
volumes Å³, energies eV (meV/atom where the name says so).

``load_config(path)`` returns a :class:`CampaignConfig` or raises :class:`~acnn_mpi.errors.UserError`
with one line per problem, each naming the field, the value and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value, info: ValidationInfo):
        """YAML's true/false where a count or a number belongs (pydantic would take true as 1)."""
        if _numeric_annotation(cls.model_fields[info.field_name].annotation) and _contains_bool(value):
            raise ValueError("a boolean (true/false) where a number belongs: give a number")
        return value


def _leaf_types(annotation) -> set:
    """The types an annotation is built from: list[tuple[int, int]] -> {list, tuple, int}."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    leaves = {origin if origin is not None else annotation}
    for arg in args:
        leaves |= _leaf_types(arg)
    return leaves


def _numeric_annotation(annotation) -> bool:
    """True for fields of numbers (int, float, lists/tuples/dicts of them) that take no booleans."""
    leaves = _leaf_types(annotation)
    return bool(leaves & {int, float}) and not leaves & {bool, Any}


def _contains_bool(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_contains_bool(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_bool(v) for v in value)
    return False


def _known_element(symbol: str) -> str:
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"unknown element symbol {symbol!r} (use symbols such as 'Mg', 'H', 'O')")
    return symbol


class ModelSettings(_Section):
    """ACNN hyperparameters (paper §IV.A; Mg-Ca-H cutoffs by default)."""

    r_cut_radial: float = Field(5.0, gt=0, description="radial cutoff r_c^r, Å")
    r_cut_angular: float = Field(4.0, gt=0, description="angular cutoff r_c^a, Å (≤ r_cut_radial)")
    n_radial: int = Field(16, ge=1, description="radial basis size n_r")
    n_angular: int = Field(14, ge=1, description="angular radial-basis size n_a")
    l_max: int = Field(4, ge=0, le=8, description="highest Legendre order in the angular features")
    angular_cross_channels: bool = Field(
        False, description="angular features from the products of all channel pairs c <= c' "
        "(n_a(n_a+1)/2 per l; the paper's Eq. 9 keeps the diagonal, n_a per l)")
    bispectrum_l_max: int = Field(
        0, ge=0, le=8, description="L of the 4-body angular features: triple products of the "
        "angular densities (real Gaunt coefficients, 1 <= l1 <= l2 <= l3 <= L, <= l_max; 9 per "
        "channel for L = 4); 0: none (the paper's model)")
    embedding: list[int] = Field([64, 64], min_length=1, description="embedding MLP widths")
    fitting: list[int] = Field([256, 256], min_length=1, description="fitting MLP widths")
    activation: Literal["tanh", "silu"] = Field("tanh", description="hidden-layer activation of the "
                                                "MLPs: 'tanh' (paper Eq. 12) or 'silu'")
    residual_fitting: bool = Field(False, description="hidden layers of the fitting MLP whose width "
                                   "equals their input's add it (x + σ(Wx + b), as DeePMD-kit)")
    linear_term: bool = Field(False, description="add a per-element linear function of the "
                              "standardized descriptors to each atomic energy (zero at the start)")
    attention_layers: int = Field(0, ge=0, description="stacked attention modules (0 for CSP speed)")
    attention_heads: int = Field(4, ge=1)
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["off", "cpp", "inductor"] = Field(
        "off", description="compiled descriptor kernels for CSP relaxations (docs/performance_model.md): "
        "'cpp' the C++ per-edge kernels (~2x per core; built once per machine, ~1-2 min, cached), "
        "'inductor' torch.compile (~1.1x; ~10-20 s per rank); both need a C++ compiler, and "
        "without one a warning and the uncompiled model; true means 'cpp', false 'off'")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_flag(cls, value):
        if isinstance(value, bool):
            return "cpp" if value else "off"
        return value

    @field_validator("embedding", "fitting")
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        return widths

    @model_validator(mode="after")
    def _angular_inside_radial(self) -> "ModelSettings":
        if self.r_cut_angular > self.r_cut_radial:
            raise ValueError(
                f"r_cut_angular = {self.r_cut_angular} Å is larger than r_cut_radial = "
                f"{self.r_cut_radial} Å; the angular cutoff must not exceed the radial one"
            )
        if self.bispectrum_l_max > self.l_max:
            raise ValueError(f"bispectrum_l_max = {self.bispectrum_l_max} is larger than l_max = "
                             f"{self.l_max}; use at most l_max (or raise l_max)")
        return self


class TrainingSettings(_Section):
    """Training schedule and loss (paper Eq. 16, §IV.A)."""

    steps: int = Field(100_000, ge=0, description="optimizer steps per (re)training; with `epochs` "
                       "the most a (re)training may take")
    epochs: Optional[float] = Field(None, gt=0, description="budget that adapts to the data: "
                                    "ceil(epochs × training frames / batch_size) steps, within "
                                    "[min_steps, steps]; null: always `steps`")
    min_steps: int = Field(0, ge=0, description="fewest steps of a (re)training with `epochs`")
    batch_size: int = Field(4, ge=1, description="structures per global minibatch")
    learning_rate: float = Field(1e-3, gt=0)
    lr_decay: float = Field(0.97, gt=0, le=1, description="learning-rate factor every decay_steps "
                            "(the clock runs on over a campaign's refinements, so p_f reaches its end)")
    decay_steps: int = Field(10_000, ge=1)
    lr_schedule: Literal["staircase", "exponential", "cosine"] = Field(
        "staircase", description="'staircase': lr_decay every decay_steps (paper, DeePMD); "
        "'exponential': the same, smooth; 'cosine': from learning_rate to lr_min_ratio × it over "
        "each (re)training, in lr_cycles cycles (warm restarts), on the training's own steps")
    lr_min_ratio: float = Field(0.01, ge=0, le=1, description="cosine: final lr / learning_rate")
    lr_cycles: int = Field(1, ge=1, description="cosine: cycles per (re)training (warm restarts)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    weight_decay_on: Literal["all", "matrices"] = Field(
        "all", description="parameters the weight decay shrinks: 'all', or 'matrices': only the "
        "weight matrices of the linear layers (MLPs, attention), not biases, the descriptor's "
        "channel mixing, the element embedding or the attention temperature")
    grad_clip_norm: Optional[float] = Field(None, gt=0, description="clip the global L2 norm of the "
                                            "gradient to this before each step (the log's grad_norm "
                                            "column shows the norms); null: no clipping")
    p_energy: float = Field(0.1, ge=0)
    p_energy_end: Optional[float] = Field(None, ge=0, description="energy prefactor that p_e tends to "
                                          "as lr falls (p_f's rule); null: p_energy throughout")
    energy_loss: Literal["per_structure", "per_atom"] = Field(
        "per_structure", description="energy term of the loss: 'per_structure' |ΔE|²/N (Eq. 16), "
        "'per_atom' (ΔE/N)², the per-atom error the RMSE reports, so small cells (surfaces, "
        "clusters) weigh as much as large ones; p_energy ≈ N × Eq. 16's for the same weight on an "
        "N-atom cell")
    p_force_start: float = Field(10.0, ge=0)
    p_force_end: float = Field(0.1, ge=0)
    p_virial: float = Field(0.1, ge=0)
    ema_decay: Optional[float] = Field(0.999, gt=0, lt=1, description="validate and write an "
                                       "exponential moving average of the weights with this decay "
                                       "per step (docs/training.md); null: the weights themselves "
                                       "(the paper)")
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    refine_perturbation: float = Field(0.01, ge=0, description="relative parameter noise on refine")
    max_label_force: float = Field(50.0, gt=0, description="eV/Å: labels with a larger force "
                                   "component are collapsed cells (see collapsed_labels)")
    collapsed_labels: Literal["weight", "drop"] = Field(
        "weight", description="'weight': train on collapsed cells with weight "
        "(max_label_force / largest force component)², so each adds a bounded loss and the model "
        "learns to avoid them; 'drop': keep them out of training (they stay in the store)")
    keep_best: bool = Field(True, description="the model written is the one with the best "
                            "validation score (p_e·E_rmse² + p_f,end·F_rmse²), not the last")
    patience: Optional[int] = Field(None, ge=1, description="stop a (re)training after this many "
                                    "validations without a better score; null: never early")
    log_every: int = Field(100, ge=1)
    validate_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    seed: int = 0


class RatioBound(_Section):
    """(Σ numerator atoms) / (Σ denominator atoms) ≤ max, e.g. H per metal ≤ 16."""

    numerator: list[str]
    denominator: list[str]
    max: float = Field(gt=0)


class CompositionSettings(_Section):
    """The composition space (paper §II.C)."""

    max_atoms_per_formula: int = Field(20, ge=1, description="atoms in the irreducible formula")
    min_atoms_per_formula: int = Field(1, ge=1)
    max_atoms_per_cell: int = Field(40, ge=1)
    min_atoms_per_cell: int = Field(1, ge=1)
    per_element_bounds: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="symbol -> [min, max] atoms per formula")
    ratio_bounds: list[RatioBound] = Field(default_factory=list)
    oxidation_states: dict[str, list[int]] = Field(default_factory=dict)
    charge_neutral: bool = False
    mixed_valence: bool = False
    joins: list[str] = Field(default_factory=list, description="end-member formulas of joins")
    formulas: list[str] = Field(default_factory=list, description="extra explicit formulas")
    join_max_coefficient: int = Field(4, ge=1, description="largest end-member multiple on joins")
    max_formula_units: Optional[int] = Field(None, ge=1, description="cap on formula units per cell")
    include_subsystems: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "CompositionSettings":
        if self.min_atoms_per_cell > self.max_atoms_per_cell:
            raise ValueError(f"min_atoms_per_cell = {self.min_atoms_per_cell} exceeds "
                             f"max_atoms_per_cell = {self.max_atoms_per_cell}")
        if self.min_atoms_per_formula > self.max_atoms_per_formula:
            raise ValueError(f"min_atoms_per_formula = {self.min_atoms_per_formula} exceeds "
                             f"max_atoms_per_formula = {self.max_atoms_per_formula}")
        for symbol, (low, high) in self.per_element_bounds.items():
            if low < 0 or high < low:
                raise ValueError(f"per_element_bounds.{symbol} = [{low}, {high}]: need 0 ≤ min ≤ max")
        if self.charge_neutral and not self.oxidation_states:
            raise ValueError("charge_neutral is true but oxidation_states is empty: "
                             "give the allowed oxidation states of every element")
        return self


MinDistances = Union[list[list[float]], dict[str, float], dict[str, dict[str, float]]]


class GenerationSettings(_Section):
    """Random symmetric structure generation (paper §IV.B, Eqs. 17-20)."""

    min_distances: Optional[MinDistances] = Field(
        None, description="Å: a symmetric matrix in the order of `elements`, or pairs {'Mg-H': 1.4}, "
        "or nested {Mg: {H: 1.4}}; default: acnn_mpi.elements.default_min_distance")
    atomic_volumes: dict[str, float] = Field(
        default_factory=dict, description="Å³ per atom of each element; default: acnn_mpi.elements")
    volume_factor: tuple[float, float] = Field((0.8, 1.2), description="random factor on Σ volumes")
    symmetry: Literal["any", "noncentrosymmetric", "polar"] = "any"
    space_groups: Optional[list[int]] = None
    max_attempts: int = Field(50, ge=1, description="tries per structure before it counts as failed")

    @field_validator("atomic_volumes")
    @classmethod
    def _positive_volumes(cls, volumes: dict[str, float]) -> dict[str, float]:
        for symbol, volume in volumes.items():
            if volume <= 0:
                raise ValueError(f"atomic volume of {symbol} = {volume} Å³ must be positive")
        return volumes

    @field_validator("volume_factor")
    @classmethod
    def _factor_range(cls, factor: tuple[float, float]) -> tuple[float, float]:
        if not 0 < factor[0] <= factor[1]:
            raise ValueError(f"volume_factor = {list(factor)}: need 0 < low ≤ high")
        return factor

    @field_validator("space_groups")
    @classmethod
    def _space_group_numbers(cls, groups):
        if groups is not None and any(not 1 <= g <= 230 for g in groups):
            raise ValueError(f"space group numbers must be 1..230, got {groups}")
        return groups


class RelaxOptions(_Section):
    """Batched relaxation (paper §IV.C): the campaign file's ``relax`` section and the ``relax``
    command's flags (derived from these fields, without the unit suffix: ``--fmax``, ``--skin``);
    the only place with their defaults. The pressure is the campaign's (``pressure``, GPa) or the
    command's ``--pressure``."""

    fmax_ev_per_a: float = Field(1e-3, gt=0, description="converged below this max force, eV/Å")
    dh_tol_ev_per_atom: float = Field(1e-6, gt=0, description="and this enthalpy change per step, eV/atom")
    stress_tol_gpa: float = Field(0.05, gt=0, description="and this max |σ + P·I| component, GPa")
    max_steps: int = Field(1000, ge=1, description="step limit per structure")
    batch_size: int = Field(64, ge=1, description="structures relaxed together on a rank")
    max_atoms: Optional[int] = Field(None, ge=1, description="cap on atoms in a rank's batch")
    chunk_size: int = Field(16, ge=1, description="structures per task dealt to a rank")
    min_distance_fraction: float = Field(0.5, gt=0, le=1,
                                         description="unphysical below this × the pair minimum distance")
    volume_window_a3_per_atom: Optional[tuple[float, float]] = Field(
        (0.5, 200.0), description="allowed volume per atom, Å³ (null: any)")
    energy_floor_ev_per_atom: Optional[float] = Field(
        -10.0, lt=0, description="unphysical below this energy per atom relative to the model's "
        "per-element reference energies (0 for models without them), eV/atom; null: no floor")
    maxstep_a: float = Field(0.2, gt=0, description="trust radius: largest step per coordinate row, Å")
    alpha_ev_per_a2: float = Field(70.0, gt=0, description="initial Hessian α I, eV/Å²")
    skin_a: float = Field(1.0, ge=0, description="Verlet skin of the neighbour lists, Å (0: rebuilt every step)")
    uphill_tolerance_ev_per_atom: float = Field(
        0.0, ge=0, description="enthalpy rise per atom a step may make and be accepted, eV/atom")
    ase_compatible: bool = Field(True, description="follow ASE's BFGS through negative curvature")
    distance_every: int = Field(10, ge=1, description="close-contact check every this many steps")

    @field_validator("volume_window_a3_per_atom")
    @classmethod
    def _ordered_window(cls, value):
        if value is not None and not 0 < value[0] < value[1]:
            raise ValueError(f"{list(value)}: give 0 < MIN < MAX, Å³ per atom")
        return value

    # energy_floor doc: no compound is bound by more than ~4.5 eV/atom (YF₃, CaF₂, ThO₂: −4.2 to
    # −4.5 eV/atom); least-squares references sit up to ~2 eV/atom above the elements' ground
    # states; model holes fall tens to thousands of eV/atom: −10 keeps a wide margin to both.

    @classmethod
    def short_names(cls) -> dict[str, str]:
        """{short name: field}: the field name without its unit suffix (``fmax`` for
        ``fmax_ev_per_a``): the engine's keywords and the ``relax`` command's flags."""
        out = {}
        for name in cls.model_fields:
            short = name
            for suffix in RELAX_UNIT_SUFFIXES:
                if short.endswith(suffix):
                    short = short[: -len(suffix)]
                    break
            out[short] = name
        return out

    def replace(self, **short) -> "RelaxOptions":
        """A copy with the given options changed, by short name (``fmax=0.01``) or field name."""
        names = self.short_names()
        unknown = sorted(set(short) - set(names) - set(names.values()))
        if unknown:
            raise TypeError(f"unknown relaxation option(s) {unknown}; known: {sorted(names)}")
        changes = {names.get(key, key): value for key, value in short.items()}
        return type(self).model_validate({**self.model_dump(), **changes})


#: unit suffixes of RelaxOptions fields, longest first
RELAX_UNIT_SUFFIXES = ("_ev_per_atom", "_a3_per_atom", "_ev_per_a2", "_ev_per_a", "_gpa", "_a")


class SelectionSchedule(_Section):
    from_iteration: int = Field(ge=0)
    c_max: int = Field(ge=1)
    l_max: int = Field(ge=1)


class SearchSettings(_Section):
    """The self-optimizing loop (paper §II.B-C, SPEC §9)."""

    initial_structures: int = Field(500, ge=1, description="N₀ random structures labelled first")
    structures_per_iteration: int = Field(100_000, ge=1, description="CSP budget per iteration")
    b_max: int = Field(1000, ge=1, description="stop an iteration's CSP at this many unphysical")
    c_max: int = Field(300, ge=1, description="compositions selected per iteration")
    l_max: int = Field(3, ge=1, description="structures selected per composition")
    schedule: list[SelectionSchedule] = Field(default_factory=list,
                                              description="C_max/L_max changes by iteration")
    max_unphysical_selected: int = Field(100, ge=0, description="unphysical/failed added per iteration")
    max_iterations: int = Field(20, ge=1)
    converge_iterations: int = Field(3, ge=1, description="k iterations without hull change")
    hull_tolerance: float = Field(5.0, gt=0, description="hull energy change tolerance, meV/atom")
    ehull_window: float = Field(100.0, gt=0, description="candidates reported within, meV/atom")
    final_top_k: int = Field(1000, ge=0, description="near-hull structures relaxed with the labeller")
    dedup_enthalpy_window: float = Field(5.0, gt=0, description="meV/atom")
    dedup_fingerprint_tolerance: float = Field(0.01, gt=0, description="cosine distance below "
                                               "which StructureMatcher is asked")
    dedup_certain_tolerance: float = Field(1e-4, ge=0, description="cosine distance below which "
                                           "fingerprints alone call a duplicate")
    fingerprint_cutoff: float = Field(6.0, gt=0, description="Å, radial distribution range")
    symprec: float = Field(0.1, gt=0, description="spglib tolerance, Å")
    seeds: list[str] = Field(default_factory=list, description="structure files (CIF, POSCAR, "
                             "extxyz, ...; relative to the YAML file) of known structures, relaxed "
                             "by the labeller at the campaign pressure and labelled in the initial "
                             "sampling")
    committee: Optional[int] = Field(None, ge=2, description="k ≥ 2 models trained together on "
                                     "the same labels (seeds training.seed + m), each refined from "
                                     "its own previous one; member 0 relaxes, all evaluate the "
                                     "candidates, and their energy spread steers the selection. "
                                     "null: one model")
    committee_spread_mev_per_atom: float = Field(10.0, gt=0, description="meV/atom: hull candidates "
                                                 "whose committee spread (std of E/N over the "
                                                 "members) exceeds this are labelled first, within "
                                                 "L_max per composition")

    @field_validator("seeds")
    @classmethod
    def _seed_files(cls, seeds: list[str], info: ValidationInfo) -> list[str]:
        base_dir = (info.context or {}).get("base_dir")
        resolved = []
        for name in seeds:
            path = Path(name).expanduser()
            if not path.is_absolute() and base_dir:
                path = Path(base_dir) / path
            if not path.is_file():
                raise ValueError(f"seed structure file {name} not found (paths are relative to "
                                 "the campaign file)")
            resolved.append(str(path.resolve()))
        return resolved


class ReferenceSettings(_Section):
    """Elemental references of the hull, for elements the campaign may not label itself (a
    fixed-composition search, an element whose DFT fails). Either is optional; the hull takes the
    lowest enthalpy per atom of each element among its labels and these."""

    structures: dict[str, str] = Field(
        default_factory=dict, description="symbol -> structure file (any format ASE reads, one "
        "element only), labelled with the initial structures and relaxed in the final stage; "
        "relative paths are taken from the campaign file's folder")
    enthalpies: dict[str, float] = Field(
        default_factory=dict, description="symbol -> eV/atom: the element's enthalpy per atom "
        "E/N + P·V/N at the campaign pressure, computed with the campaign's labeller and settings "
        "(its energy zero)")

    @field_validator("enthalpies")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        import math

        for symbol, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"enthalpy of {symbol} = {value} eV/atom must be a finite number")
        return values


class ParallelSettings(_Section):
    """Ranks, threads, GPUs and the batch job's walltime (README 'Running on a supercomputer')."""

    root_works: Optional[bool] = Field(None, description="root also relaxes (default: ≤ 4 ranks)")
    ranks_per_gpu: Optional[int] = Field(
        None, ge=1, description="with model.device auto/cuda: this many neighbouring ranks of a "
        "node share each GPU; default: local rank mod GPUs (round robin)")
    walltime_margin_s: float = Field(
        900.0, ge=0, description="s: stop cleanly (state saved, exit 3) this long before the batch "
        "job's end (Slurm/PBS, read automatically); 0 = only on a signal")


#: the most pressures one campaign searches (structure ids reserve a range per pressure:
#: campaign.plan.PRESSURE_STRIDE)
MAX_PRESSURES = 10


class CampaignConfig(_Section):
    """A whole campaign: elements, pressure and every stage's settings."""

    name: str = "campaign"
    elements: list[str] = Field(min_length=1)
    pressure: Union[float, list[float]] = Field(
        0.0, description="GPa; a list (e.g. [100, 200, 300]) searches every pressure with one "
        "potential (taken in increasing order; a one-element list is one pressure)")
    seed: int = 0
    output_dir: str = Field(".", description="campaign directory, relative to the YAML file")
    model: ModelSettings = Field(default_factory=ModelSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    compositions: CompositionSettings = Field(default_factory=CompositionSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    relax: RelaxOptions = Field(default_factory=RelaxOptions)
    search: SearchSettings = Field(default_factory=SearchSettings)
    labeller: Any = Field(
        default_factory=lambda: {"kind": "ase", "calculator": "ase.calculators.emt.EMT"},
        validate_default=True,
        description="who labels structures; schema: acnn_mpi.label.settings.LabellerSettings")
    parallel: ParallelSettings = Field(default_factory=ParallelSettings)
    references: ReferenceSettings = Field(default_factory=ReferenceSettings)

    @field_validator("references")
    @classmethod
    def _reference_files(cls, references: ReferenceSettings, info: ValidationInfo):
        """Structure files resolved against the campaign file's folder, read once to check them."""
        base_dir = (info.context or {}).get("base_dir")
        resolved = {}
        for symbol, name in references.structures.items():
            path = Path(name).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            resolved[symbol] = str(path)
            _check_reference_structure(symbol, path)
        object.__setattr__(references, "structures", resolved)
        return references

    @field_validator("labeller", mode="before")
    @classmethod
    def _labeller(cls, value, info: ValidationInfo):
        """The labeller section's schema lives with the labellers (label/settings.py); relative
        paths in it are taken from the campaign file's folder."""
        from .label.settings import settings_from_dict

        base_dir = (info.context or {}).get("base_dir")
        try:
            return settings_from_dict(value, where="labeller", base_dir=base_dir)
        except UserError as error:
            raise ValueError(str(error)) from None

    @field_validator("pressure", mode="before")
    @classmethod
    def _pressure_form(cls, value):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            raise ValueError("give a number (GPa) or a list of numbers such as [100, 200, 300]")
        return value

    @field_validator("pressure")
    @classmethod
    def _pressures(cls, value):
        """A list of pressures: sorted, distinct, at most MAX_PRESSURES; one element is one pressure."""
        if not isinstance(value, list):
            return value
        if not value:
            raise ValueError("an empty list: give one pressure (GPa) or a list of them")
        if len(set(value)) != len(value):
            raise ValueError("lists a pressure twice: give each pressure once")
        if len(value) > MAX_PRESSURES:
            raise ValueError(f"{len(value)} pressures: a campaign searches at most {MAX_PRESSURES} "
                             "(run several campaigns for more)")
        value = sorted(float(p) for p in value)
        return value[0] if len(value) == 1 else value

    @field_validator("elements")
    @classmethod
    def _elements(cls, elements: list[str]) -> list[str]:
        for symbol in elements:
            _known_element(symbol)
        if len(set(elements)) != len(elements):
            raise ValueError(f"elements {elements} lists a symbol twice")
        return elements

    @model_validator(mode="after")
    def _cross_checks(self) -> "CampaignConfig":
        known = set(self.elements)
        comp = self.compositions
        for where, symbols in (
            ("compositions.per_element_bounds", comp.per_element_bounds),
            ("compositions.oxidation_states", comp.oxidation_states),
            ("generation.atomic_volumes", self.generation.atomic_volumes),
            ("references.structures", self.references.structures),
            ("references.enthalpies", self.references.enthalpies),
        ):
            for symbol in symbols:
                _known_element(symbol)
                if symbol not in known:
                    raise ValueError(f"{where} names {symbol!r}, which is not in elements {self.elements}")
        for bound in comp.ratio_bounds:
            for symbol in bound.numerator + bound.denominator:
                if symbol not in known:
                    raise ValueError(f"compositions.ratio_bounds names {symbol!r}, "
                                     f"which is not in elements {self.elements}")
        if comp.charge_neutral:
            missing = [s for s in self.elements if s not in comp.oxidation_states]
            if missing:
                raise ValueError(f"compositions.oxidation_states misses {missing} "
                                 "(needed because charge_neutral is true)")
        if self.generation.min_distances is not None:
            try:
                table = _pair_table(self.generation.min_distances, self.elements)
            except ValueError as error:
                raise ValueError(f"generation.min_distances: {error}") from None
            object.__setattr__(self.generation, "min_distances", table)
        return self

    # -- resolved views -------------------------------------------------------------------------

    @property
    def pressures_gpa(self) -> list[float]:
        """Every pressure of the campaign (GPa), in increasing order (one for a single pressure)."""
        return list(self.pressure) if isinstance(self.pressure, list) else [float(self.pressure)]

    @property
    def several_pressures(self) -> bool:
        """True for a campaign over several pressures (files per pressure: ``P<p>/`` folders)."""
        return len(self.pressures_gpa) > 1

    def at_pressure(self, pressure_gpa: float) -> "CampaignConfig":
        """This configuration at one of its pressures (``pressure`` a number): what every stage
        of one pressure reads (relaxations, selection, hulls)."""
        if float(pressure_gpa) not in self.pressures_gpa:
            raise ValueError(f"{pressure_gpa} GPa is not a pressure of the campaign {self.pressures_gpa}")
        return self.model_copy(update={"pressure": float(pressure_gpa)})

    def min_distance_table(self) -> dict[tuple[str, str], float]:
        """Minimum distance (Å) for every unordered element pair, both orders as keys."""
        table = self.generation.min_distances
        if table is None:
            from .elements import default_min_distance

            table = {f"{a}-{b}": default_min_distance(a, b)
                     for a, b in itertools.combinations_with_replacement(self.elements, 2)}
        out = {}
        for key, value in table.items():
            a, b = key.split("-")
            out[(a, b)] = out[(b, a)] = float(value)
        return out

    def atomic_volume_table(self) -> dict[str, float]:
        """Å³ per atom for each element: the given ones, else the default of acnn_mpi.elements."""
        from .elements import default_atomic_volume

        return {symbol: self.generation.atomic_volumes.get(symbol, default_atomic_volume(symbol))
                for symbol in self.elements}

    def selection_at(self, iteration: int) -> tuple[int, int]:
        """(C_max, L_max) in force at ``iteration`` (0-based)."""
        c_max, l_max = self.search.c_max, self.search.l_max
        for entry in sorted(self.search.schedule, key=lambda e: e.from_iteration):
            if iteration >= entry.from_iteration:
                c_max, l_max = entry.c_max, entry.l_max
        return c_max, l_max


def _check_reference_structure(symbol: str, path: Path) -> None:
    """Raise ValueError unless ``path`` holds a periodic structure of ``symbol`` only."""
    _known_element(symbol)
    if not path.is_file():
        raise ValueError(f"{symbol}: structure file {path} not found")
    import ase.io

    try:
        atoms = ase.io.read(path)
    except Exception as error:  # noqa: BLE001 - any reader error is a bad file
        raise ValueError(f"{symbol}: {path} is not a structure file ASE reads ({error})") from None
    others = sorted(set(atoms.get_chemical_symbols()) - {symbol})
    if len(atoms) == 0 or others:
        raise ValueError(f"{symbol}: {path} must hold {symbol} atoms only, "
                         f"found {others or 'no atoms'}")
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(f"{symbol}: {path} must be a periodic crystal with a full cell")


def _pair_table(raw: MinDistances, elements: list[str]) -> dict[str, float]:
    """Normalize any accepted min-distance form to {'A-B': d} over all unordered pairs.

    Raises ValueError if the matrix is not square/symmetric, a pair is missing or a value ≤ 0.
    """
    given: dict[tuple[str, str], float] = {}

    def put(a: str, b: str, value: float, where: str) -> None:
        for symbol in (a, b):
            if symbol not in elements:
                raise ValueError(f"{where} names {symbol!r}, not in elements {elements}")
        value = float(value)
        if not value > 0:
            raise ValueError(f"{where} = {value} Å must be positive")
        key = (a, b) if elements.index(a) <= elements.index(b) else (b, a)
        if key in given and abs(given[key] - value) > 1e-9:
            raise ValueError(f"the matrix is not symmetric: {a}-{b} = {value} Å but "
                             f"{b}-{a} = {given[key]} Å")
        given[key] = value

    if isinstance(raw, list):
        n = len(elements)
        if len(raw) != n or any(len(row) != n for row in raw):
            raise ValueError(f"the matrix must be {n}×{n} in the order of elements {elements}")
        for i, j in itertools.product(range(n), repeat=2):
            put(elements[i], elements[j], raw[i][j], f"[{i}][{j}]")
    else:
        for key, value in raw.items():
            if isinstance(value, dict):
                for other, d in value.items():
                    put(key, other, d, f"{key}.{other}")
            else:
                parts = str(key).split("-")
                if len(parts) != 2:
                    raise ValueError(f"key {key!r} must look like 'Mg-H'")
                put(parts[0], parts[1], value, str(key))
    missing = [f"{a}-{b}" for a, b in itertools.combinations_with_replacement(elements, 2)
               if (a, b) not in given]
    if missing:
        raise ValueError(f"no value for the pair(s) {', '.join(missing)}")
    return {f"{a}-{b}": d for (a, b), d in given.items()}


# -- loading ----------------------------------------------------------------------------------------

#: keys of earlier versions that are no longer settings, and what to do instead
_REMOVED_KEYS = {
    ("parallel", "threads_per_rank"): "no longer a campaign setting (threads are fixed when a rank "
    "starts, before the file is read): give --threads N on the command line",
    ("parallel", "grace_seconds"): "no longer a setting (a stop finishes the work in flight; "
    "parallel.walltime_margin_s sets how early a batch job stops)",
}


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        loc = error["loc"]
        if tuple(map(str, loc)) in _REMOVED_KEYS:
            return f"{location}: {_REMOVED_KEYS[tuple(map(str, loc))]}"
        if len(loc) == 2 and loc[0] == "relax" and str(loc[1]) in RelaxOptions.short_names() \
                and RelaxOptions.short_names()[str(loc[1])] != loc[1]:
            return (f"{location}: renamed to relax.{RelaxOptions.short_names()[str(loc[1])]} "
                    "(relax settings carry their unit in the name)")
        return f"{location}: unknown key (check the spelling; see README 'Input file reference')"
    if error["type"] == "missing":
        return f"{location}: required but missing"
    value = error.get("input")
    if isinstance(value, dict):  # a whole section failed a cross-field check: the message says which
        return f"{message}" if location == "(top level)" else f"{location}: {message}"
    return f"{location} = {value!r}: {message}"


def config_from_dict(data: dict, source: str = "campaign", base_dir: str | None = None) -> CampaignConfig:
    """Validate a mapping (as read from YAML) into a :class:`CampaignConfig`; relative paths in it
    are taken from ``base_dir`` (the folder of the YAML file)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: the file must be a YAML mapping of settings, got {type(data).__name__}")
    try:
        return CampaignConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise UserError(f"{source}: {problems}") from None


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file; ``output_dir`` is resolved relative to the file."""
    path = Path(path)
    data = read_yaml_file(path, what="campaign file")
    refuse_non_finite(data, str(path))
    config = config_from_dict(data if data is not None else {}, source=str(path),
                              base_dir=str(path.parent.resolve()))
    output = Path(config.output_dir)
    if not output.is_absolute():
        config.output_dir = str((path.parent / output).resolve())
    return config


def read_yaml_file(path: Path, what: str = "campaign file") -> Any:
    """The YAML document in ``path`` (UTF-8 text, no repeated keys) or a one-line UserError."""
    import yaml

    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a YAML file: give the file inside it "
                        f"(e.g. {path / 'campaign.yaml'})")
    if not path.is_file():
        raise UserError(f"{what} {path} not found: create it (see inputs/demo.yaml for an example)")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"{what} {path}: cannot read it ({error.strerror}); check its permissions") from None
    if b"\0" in raw:
        raise UserError(f"{what} {path} is a binary file, not YAML text: give the campaign's .yaml file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise UserError(f"{what} {path}: line {line} is not UTF-8 text (byte 0x{raw[error.start]:02x}): "
                        "save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(error, "problem", None) or getattr(error, "reason", None) or str(error)
        raise UserError(f"{path}:{where} not valid YAML: {problem}") from None


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (YAML lets the last one win)."""

        def construct_mapping(self, node, deep=False):
            first_line = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (first on line "
                        f"{first_line[key] + 1}); keep one", key_node.start_mark)
                first_line[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def refuse_non_finite(data: Any, source: str) -> None:
    """A UserError naming every NaN or infinite number in a YAML document read from ``source``."""
    problems = [f"{where} = {value}: must be a finite number" for where, value in non_finite_entries(data)]
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))


def non_finite_entries(data: Any, where: str = "") -> list[tuple[str, float]]:
    """(dotted location, value) of every NaN or infinite number in a YAML document."""
    if isinstance(data, float) and not math.isfinite(data):
        return [(where or "(top level)", data)]
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += non_finite_entries(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            found += non_finite_entries(value, f"{where}[{index}]")
    return found


def resolved_yaml(config: CampaignConfig) -> str:
    """The full configuration with every default filled in, as YAML."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
