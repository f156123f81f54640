"""The training log: one record per progress/validation point, as CSV and JSON, and a progress line.

Records live in the checkpoint (``history``), and both files are rewritten from them atomically at
every checkpoint, so after a resume the log holds each step once.

CSV columns (:data:`COLUMNS`): ``step``, ``epoch``, ``lr``, ``p_force``, ``loss`` (Eq. 16, mean over
the minibatches since the previous row), ``loss_energy`` / ``loss_forces`` / ``loss_virial``
(unweighted mean per-structure terms |ΔE|²/N in eV²/atom, or (ΔE/N)² in eV²/atom² with
``energy_loss: per_atom``, ‖ΔF‖²/3N in eV²/Å², ‖ΔW‖²/3N in eV²/atom),
``wall_s``, ``steps_per_s``, ``grad_norm`` (the largest global gradient norm of the window,
before any ``grad_clip_norm``), then ``valid_*`` and ``extra_*`` errors (filled on rows where a
validation ran; units as in :mod:`acnn_mpi.train.metrics`: meV/atom, meV/Å, GPa).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from .checkpoint import atomic_text

_METRICS = ("energy_rmse", "energy_mae", "force_rmse", "force_mae", "stress_rmse", "stress_mae")
COLUMNS = (["step", "epoch", "lr", "p_force", "loss", "loss_energy", "loss_forces", "loss_virial",
            "wall_s", "steps_per_s", "grad_norm"]
           + [f"valid_{m}" for m in _METRICS] + [f"extra_{m}" for m in _METRICS])


def flatten_errors(prefix: str, errors: Optional[dict]) -> dict[str, Any]:
    if not errors:
        return {}
    return {f"{prefix}_{m}": errors.get(m) for m in _METRICS}


def write_logs(history: Sequence[dict], csv_path: Path, json_path: Path, summary: dict) -> None:
    """Rewrite ``metrics.csv`` and ``metrics.json`` from the records."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in history:
        writer.writerow({k: ("" if record.get(k) is None else _fmt(record.get(k))) for k in COLUMNS})
    atomic_text(buffer.getvalue(), csv_path)
    atomic_text(json.dumps({**summary, "records": list(history)}, indent=1, default=str), json_path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def progress_line(record: dict, total_steps: int) -> str:
    """``step 1200/100000  loss 1.2e-02 (E 3e-05 F 1e-03 W 0)  lr 9.7e-04  p_f 9.7 | valid E 3.10
    meV/atom  F 85.2 meV/Å  S 0.312 GPa | 12.3 steps/s``."""
    parts = [f"step {record['step']}/{total_steps}"]
    if record.get("loss") is not None:
        parts.append(f"loss {record['loss']:.4g} (E {record['loss_energy']:.3g} "
                     f"F {record['loss_forces']:.3g} W {record['loss_virial']:.3g})")
    parts.append(f"lr {record['lr']:.3g}  p_f {record['p_force']:.4g}")
    line = "  ".join(parts)
    for prefix, name in (("valid", "valid"), ("extra", "extra")):
        if record.get(f"{prefix}_energy_rmse") is not None:
            line += (f" | {name} E {record[f'{prefix}_energy_rmse']:.2f} meV/atom  "
                     f"F {record[f'{prefix}_force_rmse']:.1f} meV/Å")
            if record.get(f"{prefix}_stress_rmse") is not None:
                line += f"  S {record[f'{prefix}_stress_rmse']:.3f} GPa"
    if record.get("grad_norm"):
        line += f"  |g| {record['grad_norm']:.3g}"
    if record.get("steps_per_s"):
        line += f" | {record['steps_per_s']:.2f} steps/s"
    return line
