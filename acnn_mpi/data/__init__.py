"""Labelled frames in HDF5, their validation, importers/exporters and train/validation splits.

- :mod:`.frames`: where labels sit on ASE ``Atoms``; :class:`~.frames.FrameArrays` (flat arrays)
- :mod:`.validate`: :func:`~.validate.validate_frames` (bad frames skipped or refused, by index)
- :mod:`.h5frames`: the one HDF5 frame layout of every set of structures (labels, relaxation
  shards, structure files): its appending writer and its reader
- :mod:`.store`: :class:`~.store.FrameStore`, the appendable, crash-safe HDF5 label store
- :mod:`.io` / :mod:`.deepmd`: extended XYZ, ASE formats, VASP, DeePMD npy in and out
- :mod:`.split`: :func:`~.split.split_indices`

The names below are imported on first use, so ``import acnn_mpi.data`` stays light.
"""

_LAZY = {
    "FrameStore": "store", "FrameArrays": "frames", "LabelKeys": "frames",
    "validate_frames": "validate", "ValidationReport": "validate",
    "read_frames": "io", "iter_frames": "io", "write_frames": "io", "export_store": "io",
    "split_indices": "split",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
