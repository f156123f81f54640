#!/usr/bin/env bash
# Run the real-DFT campaign inputs/sige_cp2k.yaml (CP2K) end to end, then print its hull, label
# count, DFT time and wall time.
# Usage: scripts/run_cp2k_campaign.sh [OUTPUT_DIR] [RANKS] [CAMPAIGN.yaml (default inputs/sige_cp2k.yaml)]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/../sige_cp2k_campaign}"
ranks="${2:-2}"
campaign="${3:-$repo/inputs/sige_cp2k.yaml}"
command -v cp2k >/dev/null || { echo "CP2K not found (apt-get install cp2k cp2k-data)" >&2; exit 2; }
mpiexec="$(dirname "$(command -v python)")/mpiexec"
[ -x "$mpiexec" ] || mpiexec=mpiexec
start=$(date +%s)
"$mpiexec" -n "$ranks" python -m acnn_mpi run "$campaign" --output-dir "$out"
wall=$(( $(date +%s) - start ))
python - "$out" "$wall" <<'PY'
import json, sys
from pathlib import Path
from acnn_mpi.label.sink import LabelSink
out, wall = Path(sys.argv[1]), float(sys.argv[2])
state = json.loads((out / "state.json").read_text())
history = state.get("history", [])
count = lambda p: len(LabelSink(str(p)).read()) if p.exists() else 0
labels, final, steps = (count(out / "labels.h5"), count(out / "final/relaxed.h5"),
                        count(out / "final/relaxed.steps.h5"))
hull = out / "final/hull.json"
phases = json.loads(hull.read_text())["stable"] if hull.exists() else []
print("hull:", ", ".join(f"{p['formula']} {p['formation_enthalpy_meV']:.0f} meV/atom" for p in phases) or "-")
print(f"labels: {labels} single points in {len(history)} iteration(s); final: {final} CELL_OPT "
      f"relaxations with {steps} ionic steps stored")
evaluations = sum(r.get("label_evaluations", 0) for r in history) + state.get("final_evaluations", 0)
core_s = sum(r.get("label_core_seconds", 0.0) for r in history) + state.get("final_core_seconds", 0.0)
print(f"DFT: {evaluations} evaluations, {core_s:.0f} core-s "
      f"(single points {sum(r.get('label_seconds', 0.0) for r in history):.0f} s wall); "
      f"campaign wall time: {wall:.0f} s")
PY
