"""Batched relaxation at pressure (paper §IV.C): BFGS over positions and cell for many structures
at once, continuous batching, status classification, and HDF5 shards written per MPI rank.

* :func:`relax_structures` / :func:`iter_relax` (:mod:`.runner`): the public entry points;
* :mod:`.optimizer`: the batched BFGS state, ``init`` and ``step``;
* :mod:`.cell`: the Fréchet cell filter (log-deformation cell coordinates, as ASE);
* :mod:`.status`: converged / not_converged / unphysical / failed;
* :mod:`.evaluators`: torch models and ASE calculators behind one batch interface;
* :mod:`.shards`: per-rank HDF5 shards, the index, and :func:`read_results`.
"""

from .runner import BatchRelaxer, RelaxResult, iter_relax, relax_structures

__all__ = ["BatchRelaxer", "RelaxResult", "iter_relax", "relax_structures"]
