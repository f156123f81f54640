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
from .pressures import SUMMARY_CSV, SUMMARY_PNG
from .state import load_state


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]


def write_report(directory: str | Path, out: str | Path | None = None,
                 ehull_window_mev: float = 50.0, symprec: float = 0.1) -> ReportFiles:
    """Write ``report.html`` and ``report.md`` (plus figures and symmetrised CIF/POSCAR files) for a
    campaign directory; a campaign over several pressures gets the hull sections once per pressure."""
    paths = CampaignPaths(Path(directory))
    if not paths.state.exists():
        raise UserError(f"{directory} is not a campaign directory (no state.json): give the "
                        "output_dir of a campaign")
    state = load_state(paths.root)
    out = Path(out) if out else paths.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    history = sorted(state.history, key=lambda r: r.iteration)
    status = ("finished" if state.final_done else
              f"running or stopped at iteration {state.iteration}, stage {state.stage}")
    several = len(state.pressures_gpa) > 1
    parts = [(f" at {p:g} GPa", paths.at_pressure(p)) for p in state.pressures_gpa] if several \
        else [("", paths)]
    md = [f"# Campaign report: {paths.root.name}", ""]
    if several:
        md += [f"Status: {status}. Pressures: {', '.join(f'{p:g}' for p in state.pressures_gpa)} GPa, "
               "one potential trained on the labels of all of them.", ""]
    figures = []
    for at, part in parts:
        lines, hull_figure = _hull_section(paths, part, state, out, at, status if not several else None,
                                           symprec, ehull_window_mev)
        md += lines
        figures += hull_figure
    if several and (paths.final_root / SUMMARY_PNG).exists():
        import shutil

        shutil.copyfile(paths.final_root / SUMMARY_PNG, out / SUMMARY_PNG)
        figures.append(out / SUMMARY_PNG)
        md += ["## Phases against pressure", "", f"Formation enthalpy of every composition stable at "
               f"some pressure (final hulls; table: final/{SUMMARY_CSV}).", ""]
    md += _iteration_lines(history, several)
    cost = _cost(paths, state, history, [part.final / "relaxed.h5" for _, part in parts])
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
    figures += _figures(history, out)
    md += [f"![{f.stem}]({f.name})" for f in figures]
    markdown = out / "report.md"
    markdown.write_text("\n".join(md) + "\n")
    page = out / "report.html"
    page.write_text(_html(md, figures, out))
    return ReportFiles(html=page, markdown=markdown, figures=figures)


def _hull_section(paths: CampaignPaths, part: CampaignPaths, state, out: Path, at: str, status,
                  symprec: float, ehull_window_mev: float) -> tuple[list[str], list[Path]]:
    """The Markdown of one pressure's hull (``at``: ' at 100 GPa', or '' for a single pressure):
    its stable phases and candidates with links to their symmetrised structures; its hull figure."""
    import shutil

    hull_dir = part.final if (part.final / "hull.json").exists() else _latest_hull_dir(paths, part.part)
    hull = _read_hull(hull_dir / "hull.json") if hull_dir else {"stable": [], "compositions": []}
    files = _symmetrized_structures(part, hull_dir, hull, out / "structures" / part.part, symprec,
                                    ehull_window_mev)
    candidates = [c for c in hull["compositions"] if c["e_hull_meV"] <= ehull_window_mev]
    source = (state.final_hull_source or "final relaxations with the labeller") if hull_dir == part.final \
        else f"labels up to {hull_dir.relative_to(paths.root)}" if hull_dir else "none yet"
    if at:  # the final hull source of several pressures names each ('0 GPa: ...; 10 GPa: ...')
        source = _source_at(source, at) if hull_dir == part.final else source
    md = [f"Status: {status}. Hull from {source}." if status else f"Hull{at} from {source}.", ""]
    if hull.get("missing_elements"):
        md += [f"The hull lacks {', '.join(hull['missing_elements'])}: no label of it (its labels "
               "failed); give references.enthalpies or references.structures.", ""]
    md += [f"## Stable phases{at}", "", "| formula | space group | formation enthalpy (meV/atom) | atoms | "
           "from | structure |", "|---|---|---|---|---|---|"]
    for p in hull["stable"]:
        record = files.get(p["structure_id"])
        group = f"{record['space_group']} ({record['space_group_number']})" if record else p.get("space_group", "")
        md.append(f"| {p['formula']} | {group} | {p['formation_enthalpy_meV']:.1f} | "
                  f"{p.get('atoms', '')} | {p.get('source', '')} | {_links(record)} |")
    md += ["", f"## Candidates within {ehull_window_mev:g} meV/atom of the hull{at}", "",
           "| formula | E_hull (meV/atom) | formation enthalpy (meV/atom) | space group | structure id | "
           "structure |", "|---|---|---|---|---|---|"]
    for c in candidates:
        record = files.get(c["structure_id"])
        group = f"{record['space_group']} ({record['space_group_number']})" if record else ""
        md.append(f"| {c['formula']} | {c['e_hull_meV']:.1f} | {c['formation_enthalpy_meV']:.1f} | "
                  f"{group} | {c['structure_id']} | {_links(record)} |")
    if files:
        md += ["", f"Structure links: conventional cells symmetrised with spglib at symprec = {symprec:g} Å, "
               "as CIF (with the space group's operations and Wyckoff sites) and POSCAR; "
               f"structures/{part.part + '/' if part.part else ''} also holds primitive/ cells and a JSON "
               "per structure (space group, Wyckoff sites, tolerance)."]
    md.append("")
    figures = []
    if hull_dir and (hull_dir / "hull.png").exists():
        name = f"hull_{part.part}.png" if part.part else "hull.png"
        shutil.copyfile(hull_dir / "hull.png", out / name)
        figures.append(out / name)
    return md, figures


def _source_at(source: str, at: str) -> str:
    """This pressure's part of a final hull source written for several ('0 GPa: ...; 10 GPa: ...')."""
    key = at.removeprefix(" at ") + ": "
    for piece in source.split("; "):
        if piece.startswith(key):
            return piece[len(key):]
    return source


def _links(record) -> str:
    """'[cif](...) [poscar](...)' of a structure's symmetrised conventional cell, or ''."""
    if not record:
        return ""
    return " ".join(f"[{kind}]({record['links'][kind]})" for kind in ("cif", "poscar") if kind in record["links"])


def _iteration_lines(history, several: bool) -> list[str]:
    md = ["## Iterations", "",
          "| iteration | relaxed | unphysical | not converged | mean steps | selected | labelled | "
          "label failures | E RMSE of model n-1 (meV/atom) | F RMSE (meV/Å) | S RMSE (GPa) |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in history:
        v = r.validation
        md.append(f"| {r.iteration} | {r.structures_relaxed} | {r.unphysical} | {r.not_converged} | "
                  f"{r.relax_steps_mean:.0f} | {r.selected} | {r.labelled} | {r.label_failures} | "
                  f"{_fmt(v.get('energy_rmse'))} | {_fmt(v.get('force_rmse'))} | {_fmt(v.get('stress_rmse'))} |")
    if several:
        md += ["", "CSP per pressure (relaxed / unphysical / not converged / selected for labelling):", "",
               "| iteration | pressure (GPa) | relaxed | unphysical | not converged | selected |",
               "|---|---|---|---|---|---|"]
        for r in history:
            for key, c in sorted(r.by_pressure.items(), key=lambda item: float(item[0])):
                md.append(f"| {r.iteration} | {key} | {c.get('structures_relaxed', 0):.0f} | "
                          f"{c.get('unphysical', 0):.0f} | {c.get('not_converged', 0):.0f} | "
                          f"{c.get('selected', 0):.0f} |")
    return md


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


def _latest_hull_dir(paths: CampaignPaths, part: str = "") -> Path | None:
    """The last iteration's hull folder (of the pressure folder ``part``, 'P100', when given)."""
    hulls = sorted(paths.root.glob(f"iter_*/{part + '/' if part else ''}hull.json"))
    return hulls[-1].parent if hulls else None


def _figures(history, out: Path) -> list[Path]:
    from ..plots.learning import plot_learning_curves, plot_structures_per_iteration

    figures = []
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
    a final hull fell back to; given references have no structure. ``paths``: those of the
    hull's pressure. {structure_id: export record with ``links`` {'cif'|'poscar': path relative
    to the report}}."""
    from ..csp.export import export_hull_structures

    if not hull["stable"] or hull_dir is None:
        return {}
    default = "relaxed" if hull_dir == paths.final else "single point"
    stores = {"relaxed": paths.final / "relaxed.h5", "single point": paths.labels}
    out = {}
    report = directory.parent if not paths.part else directory.parent.parent
    for source, store_path in stores.items():
        def from_here(entry: dict) -> bool:
            return entry.get("source", default) == source and entry.get("frame", -1) >= 0

        stable = [p for p in hull["stable"] if from_here(p)]
        candidates = [c for c in hull["compositions"] if from_here(c)]
        if not stable and not candidates:
            continue
        where = directory if source == default else directory / source.replace(" ", "_")
        records = export_hull_structures(store_path, stable, candidates, where, symprec, ehull_window_mev)
        prefix = where.relative_to(report)
        for sid, record in records.items():
            conventional = [f for f in record["files"] if not f.startswith("primitive/")]
            links = {"cif" if f.endswith(".cif") else "poscar": f"{prefix}/{f}" for f in conventional}
            out[sid] = dict(record, links=links)
    return out


def _cost(paths: CampaignPaths, state, history, final_stores) -> dict:
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
    final_relaxations = state.final_relaxed or sum(frames(path) for path in final_stores)
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
    """A table cell; Markdown links ([cif](path) [poscar](path)) become HTML links."""
    import re

    links = re.findall(r"\[([^\]]+)\]\(([^)]+)\)", text)
    if links and re.sub(r"\[[^\]]+\]\([^)]+\)", "", text).strip() == "":
        return " ".join(f'<a href="{html.escape(link)}">{html.escape(name)}</a>' for name, link in links)
    return html.escape(text)
