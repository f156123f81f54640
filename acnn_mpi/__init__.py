"""acnn_mpi: self-optimizing crystal structure prediction with the ACNN potential, over MPI.

Heavy submodules load on first use, so ``import acnn_mpi`` stays fast and never touches MPI.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Batch": "acnn_mpi.state",
    "neighbor_list": "acnn_mpi.neighbors",
    "evaluate": "acnn_mpi.model.forces",
    "PotentialOutput": "acnn_mpi.model.forces",
    "LennardJones": "acnn_mpi.model.lennard_jones",
    "ACNN": "acnn_mpi.model.potential",
    "ACNNCalculator": "acnn_mpi.model.calculator",
    "relax_structures": "acnn_mpi.relax.runner",
    "enumerate_compositions": "acnn_mpi.csp.compositions",
    "generate_structures": "acnn_mpi.csp.generation",
    "CampaignConfig": "acnn_mpi.config",
    "load_config": "acnn_mpi.config",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'acnn_mpi' has no attribute {name!r}")
