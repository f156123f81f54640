"""The campaign report: one self-contained HTML page (figures embedded) and a Markdown summary.

It reads only the campaign directory (state.json, the hull files, the label store and its failure
log), so it can be written at any time, also while a campaign is still running.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .layout import CampaignPaths
from .state import load_state


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]


def write_report(directory: str | Path, out: str | Path | None = None,
                 ehull_window_mev: float = 50.0, symprec: float = 0.1) -> ReportFiles:
    """Write ``report.html`` and ``report.md`` (plus figures and CIFs) for a campaign directory."""
    paths = CampaignPaths(Path(directory))
    if not paths.state.exists():
        raise UserError(f"{directory} is not a campaign directory (no state.json): give the "
                        "output_dir of a campaign")
    state = load_state(paths.root)
    out = Path(out) if out else paths.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    hull_dir = paths.final if (paths.final / "hull.json").exists() else _latest_hull_dir(paths)
    hull = _read_hull(hull_dir / "hull.json") if hull_dir else {"stable": [], "compositions": []}
    history = sorted(state.history, key=lambda r: r.iteration)
    figures = _figures(history, hull_dir, out)
    cifs = _symmetrized_structures(paths, hull_dir, hull, out / "structures", symprec, ehull_window_mev)
    candidates = [c for c in hull["compositions"] if c["e_hull_meV"] <= ehull_window_mev]
    cost = _cost(paths, state, history)
    status = ("finished" if state.final_done else
              f"running or stopped at iteration {state.iteration}, stage {state.stage}")
    source = (state.final_hull_source or "final relaxations with the labeller") if hull_dir == paths.final \
        else f"labels up to {hull_dir.name}" if hull_dir else "none yet"

    md = [f"# Campaign report: {paths.root.name}", "", f"Status: {status}. Hull from {source}.", ""]
    if hull.get("missing_elements"):
        md += [f"The hull lacks {', '.join(hull['missing_elements'])}: no label of it (its labels "
               "failed); give references.enthalpies or references.structures.", ""]
    md += ["## Stable phases", "", "| formula | space group | formation enthalpy (meV/atom) | atoms | "
           "from | CIF |", "|---|---|---|---|---|---|"]
    for p in hull["stable"]:
        cif = cifs.get(p["structure_id"], "")
        md.append(f"| {p['formula']} | {p.get('space_group', '')} | {p['formation_enthalpy_meV']:.1f} | "
                  f"{p.get('atoms', '')} | {p.get('source', '')} | {f'[cif]({cif})' if cif else ''} |")
    md += ["", f"## Candidates within {ehull_window_mev:g} meV/atom of the hull", "",
           "| formula | E_hull (meV/atom) | formation enthalpy (meV/atom) | structure id | CIF |",
           "|---|---|---|---|---|"]
    for c in candidates:
        link = f"[cif]({cifs[c['structure_id']]})" if c["structure_id"] in cifs else ""
        md.append(f"| {c['formula']} | {c['e_hull_meV']:.1f} | {c['formation_enthalpy_meV']:.1f} | "
                  f"{c['structure_id']} | {link} |")
    if cifs:
        md += ["", f"CIF links: conventional cells symmetrised with spglib at symprec = {symprec:g} Å; "
               "structures/ also holds POSCARs, primitive/ cells and a JSON per structure (space group, "
               "Wyckoff sites, tolerance)."]
    md += ["", "## Iterations", "",
           "| iteration | relaxed | unphysical | not converged | mean steps | selected | labelled | "
           "label failures | E RMSE of model n-1 (meV/atom) | F RMSE (meV/Å) | S RMSE (GPa) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in history:
        v = r.validation
        md.append(f"| {r.iteration} | {r.structures_relaxed} | {r.unphysical} | {r.not_converged} | "
                  f"{r.relax_steps_mean:.0f} | {r.selected} | {r.labelled} | {r.label_failures} | "
                  f"{_fmt(v.get('energy_rmse'))} | {_fmt(v.get('force_rmse'))} | {_fmt(v.get('stress_rmse'))} |")
    md += _committee_table(paths, history)
    md += ["", "## Cost", "",
           f"- structures relaxed with ACNN: {cost['relaxed']:,} in {cost['acnn_evaluations']:,.0f} "
           "model evaluations (optimizer steps + the first of each structure)",
           f"- labeller evaluations: {cost['evaluations']:,} = {cost['single_points']:,} single points "
           f"(failed attempts included) + {cost['final_steps']:,} ionic steps of "
           f"{cost['final_relaxations']} final relaxations ({cost['final_failed']} failed); "
           f"{cost['core_hours']:.3g} core-hours",
           f"- a direct search with the labeller, relaxing the same structures, would take about "
           f"{cost['acnn_evaluations']:,.0f} evaluations (≈ {cost['direct_core_hours']:.3g} core-hours "
           f"at {cost['core_seconds_per_evaluation']:.3g} core·s each); speed-up in labeller "
           f"evaluations: {cost['speedup']:.0f}×", ""]
    md += [f"![{f.stem}]({f.name})" for f in figures]
    markdown = out / "report.md"
    markdown.write_text("\n".join(md) + "\n")
    page = out / "report.html"
    page.write_text(_html(md, figures, out))
    return ReportFiles(html=page, markdown=markdown, figures=figures)


def _committee_table(paths: CampaignPaths, history) -> list[str]:
    """The committee's spread per iteration (from iter_K/selection.json); nothing without one."""
    rows, threshold = [], None
    for r in history:
        path = paths.selection(r.iteration).with_suffix(".json")
        committee = json.loads(path.read_text()).get("committee") if path.exists() else None
        if committee:
            threshold = committee["threshold_mev_per_atom"]
            rows.append(f"| {r.iteration} | {committee['members']} | {committee['evaluated']} | "
                        f"{_fmt(committee['median_mev_per_atom'])} | {committee['above_threshold']} | "
                        f"{committee['selected_above_threshold']} | "
                        f"{_fmt(committee['selected_median_mev_per_atom'])} |")
    if not rows:
        return []
    return ["", f"Committee spread (std of the members' E/N, meV/atom; threshold {threshold:g}): "
            "per candidate in iter_K/selection.json.", "",
            "| iteration | members | candidates evaluated | median committee spread | above threshold | "
            "selected above threshold | median spread of the selected |", "|---|---|---|---|---|---|---|", *rows]


def _fmt(value) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _read_hull(path: Path) -> dict:
    """A hull.json written by the campaign, or a one-line UserError naming the damage."""
    try:
        hull = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(hull, dict) and all(isinstance(hull.get(key), list)
                                            for key in ("stable", "compositions"))
        problem = None if ok else "no 'stable' and 'compositions' lists"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
    if problem:
        raise UserError(f"{path} is damaged ({problem}): move it away (mv {path} {path}.bad) to "
                        "report the previous iteration's hull, or rerun the campaign to rewrite it")
    return hull


def _latest_hull_dir(paths: CampaignPaths) -> Path | None:
    hulls = sorted(paths.root.glob("iter_*/hull.json"))
    return hulls[-1].parent if hulls else None


def _figures(history, hull_dir, out: Path) -> list[Path]:
    import shutil

    from ..plots.learning import plot_learning_curves, plot_structures_per_iteration

    figures = []
    if hull_dir and (hull_dir / "hull.png").exists():
        shutil.copyfile(hull_dir / "hull.png", out / "hull.png")
        figures.append(out / "hull.png")
    later = [r for r in history if r.iteration > 0]
    if later:
        its = [r.iteration for r in later]
        curves = [[r.validation.get(key, np.nan) for r in later]
                  for key in ("energy_rmse", "force_rmse", "stress_rmse")]
        plot_learning_curves(its, *curves, out / "learning_curves.png", formats=("png",),
                             title="model n-1 on the labels of iteration n")
        figures.append(out / "learning_curves.png")
        counts = {"converged": [r.structures_relaxed - r.unphysical - r.not_converged for r in later],
                  "not_converged": [r.not_converged for r in later],
                  "unphysical": [r.unphysical for r in later]}
        plot_structures_per_iteration(its, counts, out / "structures_per_iteration.png", formats=("png",))
        figures.append(out / "structures_per_iteration.png")
    return figures


def _symmetrized_structures(paths: CampaignPaths, hull_dir, hull: dict, directory: Path, symprec: float,
                            ehull_window_mev: float) -> dict:
    """Symmetrised files of the stable phases and candidates (csp.export.export_hull_structures),
    read from the store each row came from: ``directory`` for the store the hull is mostly built
    from (the final relaxations, or the labels), ``directory/single_point`` for the single points
    a final hull fell back to; given references have no structure. {structure_id: link to the
    conventional CIF}."""
    from ..csp.export import export_hull_structures

    if not hull["stable"] or hull_dir is None:
        return {}
    default = "relaxed" if hull_dir == paths.final else "single point"
    stores = {"relaxed": paths.final / "relaxed.h5", "single point": paths.labels}
    links = {}
    for source, store_path in stores.items():
        def from_here(entry: dict) -> bool:
            return entry.get("source", default) == source and entry.get("frame", -1) >= 0

        stable = [p for p in hull["stable"] if from_here(p)]
        candidates = [c for c in hull["compositions"] if from_here(c)]
        if not stable and not candidates:
            continue
        where = directory if source == default else directory / source.replace(" ", "_")
        records = export_hull_structures(store_path, stable, candidates, where, symprec, ehull_window_mev)
        prefix = where.relative_to(directory.parent)
        links.update({sid: f"{prefix}/{r['files'][0]}" for sid, r in records.items()})
    return links


def _cost(paths: CampaignPaths, state, history) -> dict:
    """Labeller evaluations and core-hours as recorded by the stages; campaigns recorded before
    evaluations were counted fall back to the stores (one evaluation per label or failure)."""
    from ..data.store import FrameStore

    def frames(path: Path) -> int:
        if not path.exists():
            return 0
        with FrameStore(path, mode="r") as store:
            return len(store)

    relaxed = sum(r.structures_relaxed for r in history)
    acnn = sum(r.structures_relaxed * (r.relax_steps_mean + 1) for r in history)
    single = sum(r.label_evaluations for r in history)
    core_seconds = sum(r.label_core_seconds for r in history) + state.final_core_seconds
    if single == 0:
        from ..label.sink import default_failures_path

        failures_file = Path(default_failures_path(str(paths.labels)))
        failures = sum(1 for _ in open(failures_file)) if failures_file.exists() else 0
        single = frames(paths.labels) + failures
        core_seconds = sum(r.label_seconds for r in history)
    final_relaxations = state.final_relaxed or frames(paths.final / "relaxed.h5")
    final_steps = state.final_evaluations or final_relaxations
    evaluations = single + final_steps
    per_evaluation = core_seconds / max(evaluations, 1)
    return {"relaxed": relaxed, "acnn_evaluations": acnn, "single_points": single,
            "final_relaxations": final_relaxations, "final_failed": state.final_failed,
            "final_steps": final_steps, "evaluations": evaluations,
            "core_hours": core_seconds / 3600, "core_seconds_per_evaluation": per_evaluation,
            "direct_core_hours": acnn * per_evaluation / 3600,
            "speedup": acnn / max(evaluations, 1)}


def _html(markdown_lines, figures, out: Path) -> str:
    """A minimal Markdown-to-HTML rendering (headings, tables, lists) with embedded images."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_cell(c.strip())}</td>" for c in r) + "</tr>"
                                  for r in rest) + "</table>")
            table.clear()

    for line in markdown_lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<p>• {html.escape(line[2:])}</p>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1:-1]
            data = base64.b64encode((out / name).read_bytes()).decode()
            body.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></p>')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>acnn_mpi report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _cell(text: str) -> str:
    if text.startswith("[cif](") and text.endswith(")"):
        link = html.escape(text[6:-1])
        return f'<a href="{link}">cif</a>'
    return html.escape(text)
