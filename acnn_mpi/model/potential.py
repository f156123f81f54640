"""The ACNN potential (paper §II.A, Fig. 1): descriptor → embedding → [attention]ⁿ → fitting → E_i.

E = Σ_i E_i (Eq. 1) with E_i = fit(x_i) + E_ref(Z_i), where x_i are the embedded features of atom i
(Eqs. 7-12), optionally updated by stacked attention modules (Eqs. 13-15). The model follows the
atomic-energy interface of :mod:`acnn_mpi.model.forces` (``cutoff`` and ``atomic_energies``), so
forces and stress come from :func:`acnn_mpi.model.forces.evaluate` as exact derivatives.

Typical use::

    model = ACNN(ACNNHyperparameters(elements=["Mg", "Ca", "H"]))
    out = evaluate(model, batch)        # energy (B,) eV, forces (N, 3) eV/Å, stress (B, 3, 3) eV/Å³
    model.save("model.pt"); model = ACNN.load("model.pt")
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..neighbors import Edges, neighbor_list
from ..state import Batch
from .attention import NeighborAttention, PairLayout
from .descriptor import ACNNDescriptor
from .embedding import ACTIVATIONS, MLP, AtomEmbedding

FORMAT_TAG = "acnn_mpi.ACNN"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _symbol_to_number(symbol) -> int:
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise ValueError(f"unknown element symbol {symbol!r} (use symbols such as 'Mg', 'H', 'O')")
    return atomic_numbers[symbol]


@dataclass
class ACNNHyperparameters:
    """Architecture of an ACNN model (paper §IV.A values by default, Mg-Ca-H cutoffs).

    Attributes:
        elements: element symbols the model knows, in the order of its element index.
        r_cut_radial / r_cut_angular: cutoffs r_c^r and r_c^a, Å (Be-P-N-O: 6.5 / 6.0).
        n_radial / n_angular: radial basis sizes n_r (Φ⁽¹⁾) and n_a (Φ⁽²⁾).
        l_max: highest angular order in Φ⁽²⁾.
        angular_cross_channels: Φ⁽²⁾ from the products of all pairs of angular channels c ≤ c'
            (n_a(n_a+1)/2 per l), not only Eq. 9's diagonal (:mod:`.descriptor`).
        bispectrum_l_max: L of the 4-body angular features Φ⁽³⁾ (triple products of the angular
            densities with real Gaunt coefficients, l1 ≤ l2 ≤ l3 ≤ L ≤ l_max; :mod:`.descriptor`);
            0: none (the paper's model).
        embedding / fitting: MLP widths.
        activation: of the MLPs' hidden layers, "tanh" (Eq. 12) or "silu".
        residual_fitting: the fitting network's hidden layers of equal width add their input.
        linear_term: add a per-element linear function of the standardized descriptors to the
            network's atomic energy, E_i = mlp(x_i) + w_Z · Φ̂_i (zero at the start of a training).
        attention_layers / attention_heads: stacked attention modules (0 for CSP speed) and heads.
        dtype: "float32" (fast, default) or "float64".
    """

    elements: list[str]
    r_cut_radial: float = 5.0
    r_cut_angular: float = 4.0
    n_radial: int = 16
    n_angular: int = 14
    l_max: int = 4
    angular_cross_channels: bool = False
    bispectrum_l_max: int = 0
    embedding: list[int] = field(default_factory=lambda: [64, 64])
    fitting: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "tanh"
    residual_fitting: bool = False
    linear_term: bool = False
    attention_layers: int = 0
    attention_heads: int = 4
    dtype: str = "float32"

    def __post_init__(self):
        if isinstance(self.elements, str):
            raise ValueError(f"elements must be a list of symbols, got the string {self.elements!r}")
        self.elements = list(self.elements)
        if not self.elements:
            raise ValueError("elements: the model needs at least one element")
        for e in self.elements:
            _symbol_to_number(e)
        if len(set(self.elements)) != len(self.elements):
            raise ValueError(f"elements: duplicate symbols in {self.elements}")
        for name in ("angular_cross_channels", "residual_fitting", "linear_term"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if isinstance(self.dtype, torch.dtype):
            self.dtype = str(self.dtype).replace("torch.", "")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name in ("r_cut_radial", "r_cut_angular"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive (Å), got {getattr(self, name)}")
            setattr(self, name, float(getattr(self, name)))
        for name, low in (("n_radial", 1), ("n_angular", 1), ("l_max", 0), ("bispectrum_l_max", 0),
                          ("attention_layers", 0), ("attention_heads", 1)):
            value = getattr(self, name)
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
            setattr(self, name, int(value))
        if self.bispectrum_l_max > self.l_max:
            raise ValueError(f"bispectrum_l_max = {self.bispectrum_l_max} must be <= l_max = {self.l_max}")
        for name in ("embedding", "fitting"):
            widths = list(getattr(self, name))
            if not widths or any(int(w) != w or w < 1 for w in widths):
                raise ValueError(f"{name} must be a non-empty list of positive widths, got {widths}")
            setattr(self, name, [int(w) for w in widths])
        width = 3 * self.embedding[-1]
        if self.attention_layers and width % self.attention_heads:
            raise ValueError(
                f"attention_heads = {self.attention_heads} must divide the feature width "
                f"3 × embedding[-1] = {width}"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def to_dict(self) -> dict:
        """Plain-Python dict (for saving and for logs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ACNNHyperparameters":
        """From a dict such as :meth:`to_dict`'s; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ACNN hyperparameters {unknown}; known: {sorted(names)}")
        return cls(**dict(data))


class ACNN(torch.nn.Module):
    """The ACNN atomic-energy model.

    Attributes:
        hyperparameters: the :class:`ACNNHyperparameters` it was built from.
        elements: element symbols; ``numbers`` the matching atomic numbers.
        cutoff: max(r_c^r, r_c^a), Å: the neighbour-list cutoff it needs.
        reference_energies: buffer (S,) eV, added to every atom's energy by element.
    """

    def __init__(self, hyperparameters: ACNNHyperparameters):
        super().__init__()
        hp = hyperparameters
        if not isinstance(hp, ACNNHyperparameters):
            raise TypeError("ACNN takes an ACNNHyperparameters (e.g. ACNNHyperparameters(elements=['Mg', 'H']))")
        dtype = hp.torch_dtype
        self.hyperparameters = hp
        self.elements = list(hp.elements)
        self.numbers = [_symbol_to_number(e) for e in self.elements]
        self.cutoff = max(hp.r_cut_radial, hp.r_cut_angular)
        table = torch.full((119,), -1, dtype=torch.long)
        table[self.numbers] = torch.arange(len(self.numbers))
        self.register_buffer("species_table", table, persistent=False)
        S = len(self.elements)
        self.descriptor = ACNNDescriptor(S, hp.r_cut_radial, hp.r_cut_angular, hp.n_radial,
                                         hp.n_angular, hp.l_max, dtype=dtype,
                                         cross_channels=hp.angular_cross_channels,
                                         bispectrum_l_max=hp.bispectrum_l_max)
        self.embedding = AtomEmbedding(self.descriptor.n_radial_features, self.descriptor.n_angular_features,
                                       S, hp.embedding, dtype=dtype, activation=hp.activation)
        width = self.embedding.n_out
        self.attention = torch.nn.ModuleList(
            [NeighborAttention(width, hp.attention_heads, dtype=dtype) for _ in range(hp.attention_layers)]
        )
        self.fitting = MLP(width, hp.fitting, n_out=1, dtype=dtype, activation=hp.activation,
                           residual=hp.residual_fitting)
        self.linear = None
        if hp.linear_term:
            n_features = self.descriptor.n_radial_features + self.descriptor.n_angular_features
            self.linear = torch.nn.Linear(n_features, S, bias=False, dtype=dtype)
            torch.nn.init.zeros_(self.linear.weight)
        self.register_buffer("reference_energies", torch.zeros(S, dtype=dtype))
        self.to(dtype)

    # ----------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.reference_energies.dtype

    @property
    def device(self) -> torch.device:
        return self.reference_energies.device

    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """(N,) atomic numbers → (N,) element index 0..S−1; ValueError naming an unknown element."""
        table = self.species_table.to(numbers.device)
        inside = (numbers >= 0) & (numbers < table.shape[0])
        species = table[numbers.clamp(0, table.shape[0] - 1)]
        bad = ~inside | (species < 0)
        if bool(bad.any()):
            from ase.data import chemical_symbols

            z = int(numbers[bad][0])
            name = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
            raise ValueError(
                f"element {name} (Z={z}) is not one of this model's elements {self.elements}"
            )
        return species

    def atomic_energies(self, batch: Batch, edges: Edges) -> torch.Tensor:
        """(N,) atomic energies E_i in eV of every atom of ``batch``, in float64.

        ``edges`` is a full neighbour list within at least ``self.cutoff`` (pairs beyond the
        cutoffs are ignored). The network runs in the model dtype; its output and the
        per-element reference energies are added and returned in float64, because DFT reference
        energies (hundreds to thousands of eV per atom) summed in float32 would round totals to
        ~0.1 meV/atom, 100× the relaxation's enthalpy tolerance.
        """
        species = self.species_index(batch.numbers)
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx).to(self.dtype)
        features = self.descriptor(vectors, edges.index, species, neighbour_table=bool(len(self.attention)))
        radial, angular = self.embedding.standardize(features.radial, features.angular)
        x = self.embedding.embed(radial, angular, species)
        if len(self.attention):
            layout = PairLayout.build(batch.system_idx, features.neighbour, batch.n_systems)
            for module in self.attention:
                x = module(x, features.neighbour, features.cutoff, layout)
        energy = self.fitting(x).squeeze(1)
        if self.linear is not None:
            linear = self.linear(torch.cat([radial, angular], dim=1))
            energy = energy + linear.gather(1, species[:, None]).squeeze(1)
        return energy.double() + self.reference_energies.double()[species]

    # ----------------------------------------------------------------------------------------
    def set_reference_energies(self, energies) -> None:
        """Set the per-element reference energies (eV per atom).

        ``energies``: a mapping symbol (or atomic number) → eV, where elements not named keep
        their value, or a sequence/tensor (S,) in the order of ``self.elements``.
        """
        current = self.reference_energies.detach().clone()
        if isinstance(energies, Mapping):
            from ase.data import chemical_symbols

            for key, value in energies.items():
                symbol = chemical_symbols[key] if isinstance(key, int) and 0 < key < len(chemical_symbols) else key
                if symbol not in self.elements:
                    raise ValueError(f"reference energy for {key!r}, which is not one of the model's elements {self.elements}")
                current[self.elements.index(symbol)] = float(value)
        else:
            values = torch.as_tensor(energies, dtype=current.dtype).reshape(-1)
            if values.shape[0] != len(self.elements):
                raise ValueError(
                    f"reference energies: got {values.shape[0]} values for {len(self.elements)} elements {self.elements}"
                )
            current = values.to(current.device)
        self.reference_energies.copy_(current)

    @torch.no_grad()
    def fit_descriptor_statistics(self, batch: Batch, edges: Edges | None = None) -> None:
        """Standardize Φ⁽¹⁾ and Φ⁽²⁾ with the mean and standard deviation over the atoms of
        ``batch`` (a representative training batch), stored in buffers and saved with the model.

        Call before training: raw features grow with the number of neighbours and would saturate
        the tanh embeddings. Features with no spread (e.g. an element absent from the batch) keep
        scale 1.
        """
        batch = batch.to(self.device, self.dtype)
        if edges is None:
            edges = neighbor_list(batch, self.cutoff)
        species = self.species_index(batch.numbers)
        vectors = edges.vectors(batch.positions, batch.cell, batch.system_idx)
        features = self.descriptor(vectors, edges.index, species, neighbour_table=False)
        emb = self.embedding
        for values, shift, scale in ((features.radial, emb.radial_shift, emb.radial_scale),
                                     (features.angular, emb.angular_shift, emb.angular_scale)):
            mean = values.mean(0)
            std = values.std(0, unbiased=False) if values.shape[0] > 1 else torch.zeros_like(mean)
            shift.copy_(mean)
            scale.copy_(torch.where(std > 1e-8 * (1 + mean.abs()), 1.0 / std, torch.ones_like(std)))

    # ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one file: format tag and version, hyperparameters (plain dict),
        element list, state dict (including descriptor statistics) and reference energies."""
        hp = self.hyperparameters.to_dict()
        hp["dtype"] = str(self.dtype).replace("torch.", "")
        payload = {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "hyperparameters": hp,
            "elements": list(self.elements),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "reference_energies": self.reference_energies.detach().cpu().tolist(),
        }
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location=None) -> "ACNN":
        """Read a model written by :meth:`save`; ValueError for anything else (corrupt or foreign
        files, other format versions), saying what was found and what is expected."""
        expected = f"an ACNN model file written by ACNN.save (format {FORMAT_TAG!r}, version {FORMAT_VERSION})"
        name = os.fspath(path)
        with open(path, "rb") as handle:
            head = handle.read(16)
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
            raise ValueError(f"{name} is not {expected}: it is not a torch file at all (it starts with {head!r})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"{name} is not {expected}: it is a pickle holding Python objects other than tensors and "
                f"plain data, which ACNN files never contain (not loaded, for safety)"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for damaged archives
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{name} is not {expected}: it is a corrupt or truncated torch file ({reason})") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
            if not isinstance(payload, dict):
                found = f"a {type(payload).__name__}"
            elif "format" in payload:
                found = f"a dict of format {payload['format']!r}"
            else:
                found = f"a dict without a format tag, keys {sorted(map(str, payload))[:8]}"
            raise ValueError(f"{name} is not {expected}: it holds {found}")
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{name} is an ACNN model file of format version {payload.get('version')!r}; "
                f"this acnn_mpi reads version {FORMAT_VERSION}"
            )
        try:
            hp = ACNNHyperparameters.from_dict(payload["hyperparameters"])
            if list(payload["elements"]) != hp.elements:
                raise ValueError(f"element list {payload['elements']} differs from the hyperparameters' {hp.elements}")
            model = cls(hp)
            model.load_state_dict(payload["state_dict"])
            model.set_reference_energies(payload["reference_energies"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} is a damaged ACNN model file ({exc}); expected {expected}") from exc
        if map_location is not None:
            model = model.to(map_location)
        return model

    def extra_repr(self) -> str:
        hp = self.hyperparameters
        return (f"elements={self.elements}, r_cut=({hp.r_cut_radial}, {hp.r_cut_angular}) Å, "
                f"n_radial={hp.n_radial}, n_angular={hp.n_angular}, l_max={hp.l_max}, "
                f"angular_cross_channels={hp.angular_cross_channels}, "
                f"bispectrum_l_max={hp.bispectrum_l_max}, attention_layers={hp.attention_layers}, dtype={self.dtype}")
