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
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CampaignPaths:
    root: Path

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
    def final(self) -> Path:
        return self.root / "final"

    def iteration(self, k: int) -> Path:
        return self.root / f"iter_{k:03d}"

    def relax_dir(self, k: int) -> Path:
        return self.iteration(k) / "relax"

    def sample(self) -> Path:
        return self.iteration(0) / "sample.xyz"

    def selection(self, k: int) -> Path:
        return self.iteration(k) / "selection.xyz"

    def model(self, k: int) -> Path:
        return self.root / "models" / f"model_{k:03d}.pt"

    def train_dir(self, k: int) -> Path:
        return self.root / f"train_{k:03d}"

    def make(self, k: int | None = None) -> None:
        """Create the campaign folders (and those of iteration ``k``)."""
        for path in (self.root, self.root / "models", self.final):
            path.mkdir(parents=True, exist_ok=True)
        if k is not None:
            self.relax_dir(k).mkdir(parents=True, exist_ok=True)
