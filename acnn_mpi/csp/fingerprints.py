"""Fingerprints of relaxed crystals: smeared partial radial distribution functions (Oganov-Valle).

For every unordered element pair (A, B), in the order of ``elements``, the fingerprint holds

    F_AB(R) = Σ_{i∈A, cell} Σ_{j∈B, R_ij<R_c} G_σ(R - R_ij) / (4π R² Δ N_A N_B / V) - 1

on bins of width Δ from 0 to the cutoff R_c (Å), where G_σ is a normalized Gaussian of width σ
(Å) and V the cell volume (Å³) [Oganov & Valle, J. Chem. Phys. 130, 104504 (2009)]. The -1 makes
F → 0 at long range, and the normalization per atom and per density makes it independent of the
cell chosen: a supercell, another basis of the same lattice, a translation or a permutation of the
atoms give the same vector. Blocks are weighted by √(N_A N_B / Σ N_A N_B) and the whole vector is
normalized to unit length, so that the **cosine distance** ``1 - f1·f2`` is the weighted distance
of Oganov and Valle (0 for the same crystal, up to 2). Elements absent from a structure give zero
blocks; compare fingerprints only within one composition (as dedup does).

The cost is one vesin neighbour list and one ``bincount`` per structure: cheap next to a
relaxation, so workers compute fingerprints where they relax and store them with the results.
Fingerprints are float32 (B, D) with D = n_pairs × n_bins (see :func:`fingerprint_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

#: default cutoff (Å), bin width (Å) and Gaussian width (Å)
CUTOFF = 6.0
BIN_WIDTH = 0.1
SIGMA = 0.1


@dataclass(frozen=True)
class FingerprintSettings:
    """Cutoff R_c, bin width Δ and smearing σ, all in Å."""

    cutoff: float = CUTOFF
    bin_width: float = BIN_WIDTH
    sigma: float = SIGMA

    def __post_init__(self):
        if not (self.cutoff > 0 and self.bin_width > 0 and self.sigma >= 0):
            raise ValueError(f"fingerprint settings need cutoff > 0, bin_width > 0 and sigma ≥ 0, "
                             f"got {self}")

    @property
    def n_bins(self) -> int:
        return int(math.ceil(self.cutoff / self.bin_width - 1e-9))

    def bin_centres(self) -> np.ndarray:
        """(n_bins,) Å."""
        return (np.arange(self.n_bins) + 0.5) * self.bin_width


def element_pairs(elements: Sequence[str]) -> list[tuple[str, str]]:
    """Unordered pairs (A, B) with A before or equal to B in ``elements``: the fingerprint blocks."""
    return [(a, b) for k, a in enumerate(elements) for b in elements[k:]]


def fingerprint_size(n_elements: int, settings: FingerprintSettings = FingerprintSettings()) -> int:
    """D = n(n+1)/2 pairs × bins."""
    return n_elements * (n_elements + 1) // 2 * settings.n_bins


def _gaussian_kernel(settings: FingerprintSettings) -> np.ndarray:
    if settings.sigma == 0:
        return np.ones(1)
    half = int(math.ceil(4.0 * settings.sigma / settings.bin_width))
    x = np.arange(-half, half + 1) * settings.bin_width
    kernel = np.exp(-0.5 * (x / settings.sigma) ** 2)
    return kernel / kernel.sum()


def fingerprint_from_arrays(positions: np.ndarray, cell: np.ndarray, numbers: np.ndarray,
                            elements: Sequence[str],
                            settings: FingerprintSettings = FingerprintSettings(),
                            *, _calculator=None) -> np.ndarray:
    """Fingerprint of one periodic structure.

    Args:
        positions: (N, 3) Cartesian positions, Å.
        cell: (3, 3) lattice vectors as rows, Å (periodic in all three directions).
        numbers: (N,) atomic numbers; every one must be an element of ``elements``.
        elements: chemical symbols fixing the block order (the campaign's elements).
        settings: cutoff, bin width and smearing (Å).

    Returns:
        (D,) float32 unit vector (or zeros for a structure without any pair within the cutoff).
    """
    from ase.data import atomic_numbers

    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    numbers = np.asarray(numbers)
    n_el = len(elements)
    z_to_species = np.full(max(119, int(numbers.max(initial=0)) + 1), -1)
    for k, symbol in enumerate(elements):
        z_to_species[atomic_numbers[symbol]] = k
    species = z_to_species[numbers]
    if (species < 0).any():
        from ase.data import chemical_symbols

        bad = sorted({chemical_symbols[z] for z in numbers[species < 0]})
        raise ValueError(f"structure contains {bad}, not in the fingerprint elements {list(elements)}")
    volume = abs(float(np.linalg.det(cell)))
    if not volume > 0:
        raise ValueError("fingerprints need a periodic cell with a non-zero volume")

    n_bins = settings.n_bins
    # block index of the unordered pair (a, b), a <= b, in element_pairs order
    pair_index = np.full((n_el, n_el), -1)
    p = 0
    for a in range(n_el):
        for b in range(a, n_el):
            pair_index[a, b] = pair_index[b, a] = p
            p += 1
    n_pairs = p

    if _calculator is None:
        import vesin

        _calculator = vesin.NeighborList(cutoff=float(settings.cutoff), full_list=False)
    i, j, d = _calculator.compute(points=positions, box=cell, periodic=True, quantities="ijd")
    si, sj = species[i], species[j]
    block = pair_index[si, sj]
    # a half list holds each pair once; the sum over i∈A, j∈A counts it twice
    weight = np.where(si == sj, 2.0, 1.0)
    # linear (cloud-in-cell) deposition between the two nearest bin centres: continuous in d
    u = d / settings.bin_width - 0.5
    low = np.floor(u).astype(np.int64)
    upper = u - low
    flat = []
    for k, w in ((low, 1.0 - upper), (low + 1, upper)):
        inside = (k >= 0) & (k < n_bins)
        flat.append((block[inside] * n_bins + k[inside], weight[inside] * w[inside]))
    counts = np.bincount(np.concatenate([f[0] for f in flat]),
                         weights=np.concatenate([f[1] for f in flat]),
                         minlength=n_pairs * n_bins).reshape(n_pairs, n_bins)
    kernel = _gaussian_kernel(settings)
    if kernel.size > 1:
        half = kernel.size // 2
        padded = np.pad(counts, ((0, 0), (half, half)))
        counts = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])

    n_per_species = np.bincount(species, minlength=n_el).astype(np.float64)
    r = settings.bin_centres()
    shell = 4.0 * np.pi * r ** 2 * settings.bin_width
    fp = np.zeros((n_pairs, n_bins))
    block_weight = np.zeros(n_pairs)
    for a in range(n_el):
        for b in range(a, n_el):
            nn = n_per_species[a] * n_per_species[b]
            if nn == 0:
                continue
            q = pair_index[a, b]
            fp[q] = counts[q] / (shell * nn / volume) - 1.0
            block_weight[q] = nn if a == b else 2.0 * nn  # (A,B) and (B,A) in Oganov's double sum
    total = block_weight.sum()
    if total > 0:
        fp *= np.sqrt(block_weight / total)[:, None]
    fp = fp.ravel()
    norm = np.linalg.norm(fp)
    return (fp / norm if norm > 0 else fp).astype(np.float32)


def fingerprint(atoms, elements: Sequence[str],
                settings: FingerprintSettings = FingerprintSettings()) -> np.ndarray:
    """(D,) float32 fingerprint of an ASE ``Atoms`` (periodic); see :func:`fingerprint_from_arrays`."""
    return fingerprint_from_arrays(atoms.positions, atoms.cell.array, atoms.numbers, elements, settings)


def fingerprints(structures: Iterable, elements: Sequence[str],
                 settings: FingerprintSettings = FingerprintSettings()) -> np.ndarray:
    """(B, D) float32 fingerprints of many ASE ``Atoms`` (one reused neighbour-list object)."""
    import vesin

    calculator = vesin.NeighborList(cutoff=float(settings.cutoff), full_list=False)
    rows = [fingerprint_from_arrays(a.positions, a.cell.array, a.numbers, elements, settings,
                                    _calculator=calculator) for a in structures]
    if not rows:
        return np.zeros((0, fingerprint_size(len(elements), settings)), np.float32)
    return np.stack(rows)


def fingerprints_from_batch(positions: np.ndarray, cells: np.ndarray, numbers: np.ndarray,
                            n_atoms: np.ndarray, elements: Sequence[str],
                            settings: FingerprintSettings = FingerprintSettings()) -> np.ndarray:
    """(B, D) fingerprints of a flat batch, as a relaxation worker holds it.

    Args:
        positions: (N, 3) Å, the structures' atoms one after the other.
        cells: (B, 3, 3) Å, rows are lattice vectors.
        numbers: (N,) atomic numbers.
        n_atoms: (B,) atoms of each structure (sums to N).
    """
    import vesin

    calculator = vesin.NeighborList(cutoff=float(settings.cutoff), full_list=False)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(n_atoms, dtype=np.int64))])
    if offsets[-1] != len(positions):
        raise ValueError(f"n_atoms sums to {offsets[-1]} but positions has {len(positions)} rows")
    out = np.zeros((len(cells), fingerprint_size(len(elements), settings)), np.float32)
    for b in range(len(cells)):
        s, e = offsets[b], offsets[b + 1]
        out[b] = fingerprint_from_arrays(positions[s:e], cells[b], numbers[s:e], elements, settings,
                                         _calculator=calculator)
    return out


def cosine_distance(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """1 - f1·f2 of unit fingerprints, (D,) or (M, D) against (D,) or (M, D)."""
    return 1.0 - np.sum(np.asarray(f1, np.float64) * np.asarray(f2, np.float64), axis=-1)
