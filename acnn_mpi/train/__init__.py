"""Training the ACNN (paper §IV.A): Eq. 16 loss, AdamW with decaying learning rate and force
prefactor, least-squares reference energies, exact resume, refinement, validation errors and
data parallelism over MPI ranks.

Modules: ``frames`` (labelled frames, minibatches with cached neighbour lists), ``loss`` (Eq. 16 and
the schedule), ``reference`` (per-element energies), ``metrics`` (RMSE/MAE), ``sampler`` (data order),
``checkpoint`` (atomic, resumable), ``models`` (build/save/perturb), ``logbook`` (CSV/JSON logs),
``trainer`` (the loop), ``api`` (:func:`train_model`).
"""

from .api import TrainResult, train_model
from .frames import Frame, load_frames
from .metrics import evaluate_errors
from .reference import fit_reference_energies

__all__ = ["TrainResult", "train_model", "Frame", "load_frames", "evaluate_errors",
           "fit_reference_energies"]
