"""Labelling structures with energy, forces and stress: DFT codes and ASE calculators.

``make_labeller(settings)`` builds a :class:`Labeller` from the campaign's ``labeller:`` section;
``labeller.label(atoms)`` and ``labeller.relax(atoms, pressure_gpa, fmax, steps)`` return a
:class:`LabelResult` (labels, or a failure with its reason and log tail). Many structures over MPI
ranks: :func:`acnn_mpi.label.runner.label_structures`. See docs/labelling.md.

Heavy modules are imported on first use (``from acnn_mpi.label import make_labeller`` stays light).
"""

from __future__ import annotations

_EXPORTS = {
    "Labeller": "base", "LabelResult": "base", "LabelFailure": "base", "Labels": "base",
    "check_labels": "base",
    "LabellerSettings": "settings", "settings_from_dict": "settings",
    "make_labeller": "factory",
    "kpoint_mesh": "kpoints",
    "child_environment": "process", "is_rank_variable": "process",
    "label_structures": "runner", "LabelSummary": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
