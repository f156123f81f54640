"""Where a campaign keeps its files (one directory; every path is derived here).

```
DIR/
  campaign.log          the root's log
  state.json            the resume point (campaign/state.py)
  labels.h5             every label of the campaign (data/store.py), appended as labels arrive
  labels.failures.jsonl   failed labelling attempts, kept for the report
  iter_000/sample.xyz   the N0 random structures of the initial sampling
  iter_K/relax/         relaxed structures of iteration K: a relaxation-service output directory
                        (relax/shards.py): shards/rankRRRR.h5 (one per rank, committed in
                        crash-safe appends, with fingerprints) and relax.json (model and settings)
                        (a campaign of an earlier version: its chunk_*.h5 moved into
                        shards/rank0000.h5 on resume, kept in chunks.old/: campaign/legacy.py)
  iter_K/selection.xyz  structures picked for labelling (+ selection.json: why each was picked)
  iter_K/hull.csv|json|png   the phase diagram after iteration K (labeller energies)
  models/model_K.pt     the ACNN model trained after iteration K; train_K/ its checkpoints and logs
  final/                top-K near-hull structures relaxed by the labeller, and the final hull
  report/               `python -m acnn_mpi report DIR`
  campaign.resolved.yaml  the campaign's settings with every default filled in (export reads it)
```

A campaign over several pressures keeps one labels.h5, models/ and state.json, and puts what
depends on the pressure in a ``P<p>`` folder per pressure (``P100``, ``P12.5``): ``iter_K/relax/P<p>/``
(the relaxation-service directory at that pressure), ``iter_K/P<p>/`` (selection and hull files),
``final/P<p>/`` (final relaxations and hull); ``final/enthalpy_vs_pressure.png|csv`` compares the
pressures. A campaign of one pressure has no ``P<p>`` folders (the layout above).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


RESOLVED_CONFIG = "campaign.resolved.yaml"


def pressure_part(pressure_gpa: float) -> str:
    """The folder name of one pressure of a campaign over several: ``P100``, ``P12.5``, ``P-1``."""
    return f"P{float(pressure_gpa):g}"


def part_pressure(name: str) -> float | None:
    """The pressure (GPa) of a folder named by :func:`pressure_part`, or None for another name."""
    if not name.startswith("P"):
        return None
    try:
        return float(name[1:])
    except ValueError:
        return None


@dataclass(frozen=True)
class CampaignPaths:
    """The files of a campaign; with ``part`` (``P<p>``) those of one of its several pressures."""

    root: Path
    part: str = ""

    def at_pressure(self, pressure_gpa: float | None) -> "CampaignPaths":
        """The paths of one pressure (None: a campaign of one pressure, no ``P<p>`` folders)."""
        return CampaignPaths(self.root, "" if pressure_gpa is None else pressure_part(pressure_gpa))

    @property
    def resolved_config(self) -> Path:
        return self.root / RESOLVED_CONFIG

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "campaign.log"

    @property
    def labels(self) -> Path:
        return self.root / "labels.h5"

    @property
    def final_root(self) -> Path:
        """``final/``: of the campaign (the pressure comparison lives here)."""
        return self.root / "final"

    @property
    def final(self) -> Path:
        """This pressure's final relaxations and hull (``final/`` or ``final/P<p>/``)."""
        return self.final_root / self.part

    def iteration(self, k: int) -> Path:
        return self.root / f"iter_{k:03d}"

    def relax_dir(self, k: int) -> Path:
        return self.iteration(k) / "relax" / self.part

    def hull_dir(self, k: int) -> Path:
        """This pressure's hull and selection files of iteration k (``iter_K/`` or ``iter_K/P<p>/``)."""
        return self.iteration(k) / self.part

    def sample(self) -> Path:
        return self.iteration(0) / "sample.xyz"

    def selection(self, k: int) -> Path:
        return self.hull_dir(k) / "selection.xyz"

    def model(self, k: int) -> Path:
        return self.root / "models" / f"model_{k:03d}.pt"

    def train_dir(self, k: int) -> Path:
        return self.root / f"train_{k:03d}"

    def make(self, k: int | None = None) -> None:
        """Create the campaign folders (and those of iteration ``k``)."""
        for path in (self.root, self.root / "models", self.final):
            path.mkdir(parents=True, exist_ok=True)
        if k is not None:
            for path in (self.relax_dir(k), self.hull_dir(k)):
                path.mkdir(parents=True, exist_ok=True)
