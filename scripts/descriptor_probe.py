"""How the descriptor alone extrapolates: a ridge regression of energies (and forces) on its features.

    python scripts/descriptor_probe.py TRAIN.xyz HELD_OUT.xyz [--set model.KEY=VALUE ...] \
        [--quadratic | --force-weight W] [--ridge 1e-4,1e-3,1e-2,1e-1] [--signed Surface] \
        [--leave-one-out Surface]

The features are those of the recipe's descriptor (``inputs/accuracy_mlearn.yaml``'s ``model``
section, or ``--recipe FILE``, with ``--set`` on top): Φ⁽¹⁾, Φ⁽²⁾ (and Φ⁽³⁾) of every atom with the
angular mixing at its identity start (Eq. 9's own channels, nothing learned), standardized over the
training atoms and averaged over each structure's atoms; ``--quadratic`` adds their pairwise
products (a quadratic model of the atomic energy). A linear model of these, fitted to the energies
per atom of TRAIN by ridge regression for each ``--ridge`` strength (times the number of frames),
is a SNAP-like potential; ``--force-weight W`` fits the forces too (each force component's residual
in eV/Å weighs W² against an energy residual in eV/atom; the features' derivatives took 0.4 s per
64-atom frame on a 2-core Intel Xeon VM). For each strength the script prints the RMSE on TRAIN, the RMSE of each ``group``
of HELD_OUT (extxyz ``info['group']``) and the signed errors (model − label, meV/atom) of the
``--signed`` group's frames: whether an unseen frame's error is the network's or already in what
the features show of it (round 14 of docs/training.md). ``--leave-one-out GROUP`` also predicts
each TRAIN frame of that group from a fit to all the other TRAIN frames (energies only): a choice
of descriptor by how it prices an unseen surface that never reads HELD_OUT (round 15). Seconds to
minutes per descriptor; no training.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_accuracy import RECIPE_FILE, apply_sets, fail, recipe  # noqa: E402  (scripts/ is on sys.path)


@dataclass(frozen=True)
class RidgeFit:
    """y ≈ ((A − column_mean) / column_scale) · weights + intercept (A: (B, D), y: (B,))."""

    column_mean: np.ndarray
    column_scale: np.ndarray
    weights: np.ndarray
    intercept: float

    def predict(self, design: np.ndarray) -> np.ndarray:
        return ((design - self.column_mean) / self.column_scale) @ self.weights + self.intercept

    def predict_forces(self, force_design: np.ndarray) -> np.ndarray:
        """(3N,) forces from the (3N, D) derivatives of :func:`force_rows` (the intercept has none)."""
        return (force_design / self.column_scale) @ self.weights


def spread(values: np.ndarray) -> np.ndarray:
    """The columns' standard deviations, 1 where a column is constant (so it standardizes to 0)."""
    std = values.std(axis=0)
    return np.where(std > 0, std, 1.0)


def fit_ridge(design: np.ndarray, targets: np.ndarray, strength: float,
              force_design: np.ndarray | None = None, force_targets: np.ndarray | None = None,
              force_weight: float = 0.0) -> RidgeFit:
    """Ridge regression with an unpenalized intercept: min |Âw + c − y|² + W²|F̂w − f|² +
    strength·B·|w|², Â the columns of ``design`` (B, D) standardized (a constant column has scale 1
    and weight 0), F̂ the rows of ``force_design`` (M, D) scaled alike, W = ``force_weight``."""
    mean, scale = design.mean(axis=0), spread(design)
    a = (design - mean) / scale
    centre = float(targets.mean())  # Â's columns are centred, so the intercept is ȳ whatever w is
    rows, rhs = [a], [targets - centre]
    if force_design is not None and force_weight > 0:
        rows.append(force_weight * force_design / scale)
        rhs.append(force_weight * force_targets)
    a, y = np.concatenate(rows), np.concatenate(rhs)
    gram = a.T @ a + strength * len(design) * np.eye(a.shape[1])
    weights = np.linalg.solve(gram, a.T @ y)
    return RidgeFit(mean, scale, weights, centre)


def probe_model(settings: dict, elements: list[str]):
    """A fresh ACNN of the ``model`` settings (validated as a campaign file is: UserError), its
    angular mixing set to the identity: the features as Eq. 9 defines them, before any training."""
    import torch

    from acnn_mpi.config import config_from_dict
    from acnn_mpi.train.models import build_acnn

    config = config_from_dict({"elements": elements, "model": {**settings, "device": "cpu"}}, source="--set")
    model = build_acnn(config.model, elements)
    with torch.no_grad():
        mixing = model.descriptor.angular_mixing
        mixing.copy_(torch.eye(mixing.shape[0], dtype=mixing.dtype).repeat(1, mixing.shape[1] // mixing.shape[0]))
    return model


def atom_features(model, frames: list, derivatives: bool = False) -> list[tuple]:
    """Per frame, (x, J): the (N, D) radial and angular features of its atoms and, with
    ``derivatives``, J = ∂(Σ_i x_i)/∂r, (3N, D) in 1/Å (else None); float64 arrays."""
    import torch

    from acnn_mpi.neighbors import neighbor_list
    from acnn_mpi.state import Batch

    out = []
    for atoms in frames:
        batch = Batch.from_atoms([atoms], dtype=model.dtype)
        positions = batch.positions.clone().requires_grad_(derivatives)
        edges = neighbor_list(batch, model.cutoff)
        with torch.set_grad_enabled(derivatives):
            vectors = edges.vectors(positions, batch.cell, batch.system_idx).to(model.dtype)
            f = model.descriptor(vectors, edges.index, model.species_index(batch.numbers))
            x = torch.cat([f.radial, f.angular], dim=1)
        jacobian = None
        if derivatives:
            total = x.sum(dim=0)
            jacobian = np.stack([torch.autograd.grad(total[d], positions, retain_graph=True)[0]
                                 .double().numpy().ravel() for d in range(total.shape[0])], axis=1)
        out.append((x.detach().double().numpy(), jacobian))
    return out


def force_rows(features: list[tuple], scale: np.ndarray) -> np.ndarray:
    """(Σ 3N, D) minus the derivatives of the atoms' standardized features summed over each frame:
    a linear model's forces, F = −∂E/∂r with E = N·(mean_i z_i · w + c)."""
    return np.concatenate([-jacobian / scale for _, jacobian in features])


def design_matrix(features: list[tuple], mean: np.ndarray, scale: np.ndarray,
                  quadratic: bool = False) -> np.ndarray:
    """(B, D') structure averages of the atoms' standardized features (and, with ``quadratic``,
    of their products z_i z_j, i ≤ j): a linear model of these is a sum of atomic energies / N."""
    rows = []
    upper = None
    for x, _ in features:
        z = (x - mean) / scale
        if quadratic:
            upper = upper or np.triu_indices(z.shape[1])
            z = np.concatenate([z, (z[:, :, None] * z[:, None, :])[:, upper[0], upper[1]]], axis=1)
        rows.append(z.mean(axis=0))
    return np.array(rows)


def energies_per_atom(frames: list) -> np.ndarray:
    """(B,) label energies per atom, eV/atom."""
    return np.array([a.get_potential_energy() / len(a) for a in frames])


@dataclass(frozen=True)
class ProbeSplit:
    """One split's structure design (B, D'), energies per atom (B,) eV/atom and groups; with
    forces, the force rows (Σ 3N, D) and the labels (Σ 3N,) eV/Å."""

    design: np.ndarray
    energies: np.ndarray
    groups: list
    force_design: np.ndarray | None = None
    forces: np.ndarray | None = None


def _rmse(errors) -> float:
    return float(np.sqrt(np.mean(np.square(errors))))


def report(fit: RidgeFit, strength: float, train: ProbeSplit, held: ProbeSplit, signed: str) -> str:
    """One line: the RMSE on the training split, of each held-out group and of all held-out frames
    (energy meV/atom; with forces, / force meV/Å), then the signed group's errors (meV/atom)."""
    def cell(name, split, energy_error, mask=None):
        text = f"{name} {_rmse(energy_error if mask is None else energy_error[mask]):.2f}"
        return text if split.force_design is None or mask is not None else \
            text + f" / {1000 * _rmse(fit.predict_forces(split.force_design) - split.forces):.0f}"

    train_error = 1000 * (fit.predict(train.design) - train.energies)
    error = 1000 * (fit.predict(held.design) - held.energies)
    groups = np.asarray(held.groups)
    cells = [f"ridge {strength:g}", cell("train", train, train_error)]
    cells += [cell(group, held, error, groups == group) for group in sorted(set(held.groups))]
    cells.append(cell("all", held, error))
    chosen = error[groups == signed]
    if len(chosen):
        cells.append(f"{signed} signed " + " ".join(f"{e:+.1f}" for e in chosen))
    return "| " + " | ".join(cells) + " |"


def leave_one_out(train: ProbeSplit, group: str, strength: float) -> np.ndarray:
    """Signed energy errors (meV/atom) of every ``group`` frame of ``train``, each predicted by a
    ridge fit (energies only) to all the other frames. The per-atom standardization of the
    features (unsupervised) keeps all frames; the fit re-standardizes its own rows."""
    chosen = np.flatnonzero(np.asarray(train.groups) == group)
    errors = []
    for k in chosen:
        keep = np.arange(len(train.energies)) != k
        fit = fit_ridge(train.design[keep], train.energies[keep], strength)
        errors.append(1000 * (fit.predict(train.design[k:k + 1])[0] - train.energies[k]))
    return np.array(errors)


def leave_one_out_report(train: ProbeSplit, group: str, strength: float) -> str:
    """One line: the leave-one-out RMSE of ``group`` in TRAIN and its signed errors (meV/atom)."""
    errors = leave_one_out(train, group, strength)
    return (f"| ridge {strength:g} | leave-one-out {group} ({len(errors)} frames) RMSE {_rmse(errors):.2f}, "
            f"MAE {np.abs(errors).mean():.2f} | "
            + " ".join(f"{e:+.1f}" for e in errors) + " |")


def probe_splits(model, train: list, held: list, quadratic: bool, forces: bool) -> list[ProbeSplit]:
    """The training and held-out :class:`ProbeSplit`, standardized by the training atoms' features."""
    f_train, f_held = atom_features(model, train, forces), atom_features(model, held, forces)
    atoms = np.concatenate([x for x, _ in f_train])
    mean, scale = atoms.mean(axis=0), spread(atoms)
    return [ProbeSplit(design_matrix(features, mean, scale, quadratic), energies_per_atom(frames),
                       [str(a.info.get("group", "all frames")) for a in frames],
                       force_rows(features, scale) if forces else None,
                       np.concatenate([a.get_forces().ravel() for a in frames]) if forces else None)
            for frames, features in ((train, f_train), (held, f_held))]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("train", help="labelled frames to fit (extxyz)")
    p.add_argument("held_out", help="labelled frames to predict (extxyz)")
    p.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                   help="override a descriptor setting of the recipe, e.g. model.r_cut_radial=5.0")
    p.add_argument("--recipe", default=str(RECIPE_FILE), help="campaign file whose model section is used")
    p.add_argument("--quadratic", action="store_true", help="add the products of feature pairs")
    p.add_argument("--ridge", default="1e-4,1e-3,1e-2,1e-1", help="ridge strengths, comma-separated")
    p.add_argument("--force-weight", type=float, default=0.0, metavar="W",
                   help="fit the forces too: a force residual (eV/Å) weighs W² against an energy "
                        "residual (eV/atom); 0 (default): energies only")
    p.add_argument("--signed", default="Surface", help="group whose signed errors are printed")
    p.add_argument("--leave-one-out", metavar="GROUP", default=None,
                   help="also predict each TRAIN frame of GROUP from a fit to the other TRAIN frames")
    return p.parse_args(argv)


def model_settings(args) -> dict:
    settings = {"model": recipe(Path(args.recipe))["model"]}
    apply_sets(settings, args.set, "use model.KEY=VALUE", require_value=True)
    return settings["model"]


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in (args.train, args.held_out):
        if not Path(path).is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    try:
        strengths = [float(s) for s in args.ridge.split(",")]
    except ValueError:
        fail(f"--ridge {args.ridge}: give numbers separated by commas, e.g. 1e-3,1e-2")
    if args.force_weight < 0 or (args.force_weight > 0 and args.quadratic):
        fail(f"--force-weight {args.force_weight:g}: give W ≥ 0, and W > 0 without --quadratic "
             "(the products' derivatives are not computed)")
    from ase.io import read

    from acnn_mpi.errors import UserError

    train, held = read(args.train, ":"), read(args.held_out, ":")
    elements = sorted({s for a in train for s in a.get_chemical_symbols()})
    try:
        model = probe_model(model_settings(args), elements)
    except UserError as error:
        fail(str(error))
    forces = args.force_weight > 0
    if forces and not all(a.calc is not None and "forces" in a.calc.results for a in train + held):
        fail("--force-weight: every frame of both files needs forces (extxyz forces column)")
    try:
        splits = probe_splits(model, train, held, args.quadratic, forces)
    except ValueError as error:  # an element of HELD_OUT that TRAIN lacks
        fail(f"{args.held_out}: {error}")
    if args.leave_one_out and args.leave_one_out not in splits[0].groups:
        fail(f"--leave-one-out {args.leave_one_out}: {args.train} has no frame of that group "
             f"(its groups: {', '.join(sorted(set(splits[0].groups)))})")
    print(f"{len(train)} training / {len(held)} held-out frames, {splits[0].design.shape[1]} features per "
          f"structure; RMSE in meV/atom" + (f" / meV/Å (force weight {args.force_weight:g})" if forces
                                            else " (energy only, no forces)"))
    for strength in strengths:
        fit = fit_ridge(splits[0].design, splits[0].energies, strength, splits[0].force_design,
                        splits[0].forces, args.force_weight)
        print(report(fit, strength, splits[0], splits[1], args.signed))
        if args.leave_one_out:
            print(leave_one_out_report(splits[0], args.leave_one_out, strength))
    return 0


if __name__ == "__main__":
    sys.exit(main())
