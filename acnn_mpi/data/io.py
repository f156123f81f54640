"""Reading labelled frames from the files users have, and writing training sets back out.

Import formats (``format=``):

- ``extxyz``: extended XYZ (labels from the calculator fields ASE reads, or from any ``info`` /
  ``arrays`` keys given through :class:`~acnn_mpi.data.frames.LabelKeys`);
- ``deepmd``: DeePMD npy systems (a system folder, or a folder searched for systems);
- ``store``: another acnn_mpi frame store (``.h5``);
- ``db``: an ASE database (key-value pairs become ``atoms.info``);
- ``outcar`` / ``vasprun``: VASP OUTCAR / vasprun.xml (every ionic step);
- any other format name ASE knows (``traj``, ``cif`` ...), read with ``ase.io.iread``;
- ``auto``: from the name (folder: deepmd; .h5/.hdf5: store; .xyz/.extxyz: extxyz; .db: db;
  OUTCAR*: outcar; vasprun*.xml: vasprun; anything else: ASE's own guess).

Export formats: ``extxyz`` and ``deepmd``. Frames are ASE ``Atoms`` with their labels on a
SinglePointCalculator (energy eV, forces eV/Å, stress eV/Å³ ASE sign) throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from ..errors import UserError

IMPORT_FORMATS = ("auto", "extxyz", "deepmd", "store", "db", "outcar", "vasprun")
EXPORT_FORMATS = ("extxyz", "deepmd")
_ASE_NAMES = {"extxyz": "extxyz", "outcar": "vasp-out", "vasprun": "vasp-xml"}


def detect_format(path) -> Optional[str]:
    """Our format name for ``path`` from its name, or None to let ASE guess."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "deepmd"
    if path.suffix.lower() in (".h5", ".hdf5"):
        return "store"
    if path.suffix.lower() in (".xyz", ".extxyz"):
        return "extxyz"
    if path.suffix.lower() == ".db":
        return "db"
    if name.startswith("outcar"):
        return "outcar"
    if name.startswith("vasprun") and name.endswith(".xml"):
        return "vasprun"
    return None


def check_import_format(format: str) -> None:
    """Raise UserError unless ``format`` is one of ours or a format ASE reads."""
    if format in IMPORT_FORMATS:
        return
    from ase.io.formats import ioformats

    if format not in ioformats or not ioformats[format].can_read:
        raise UserError(f"unknown import format {format!r}: use one of {', '.join(IMPORT_FORMATS)} "
                        "or a format ASE reads (ase info --formats)")


def iter_frames(path, format: str = "auto", *, type_map: Optional[Sequence[str]] = None) -> Iterator:
    """ASE ``Atoms`` from ``path``, one at a time (labels as the file holds them).

    Args:
        path: a file, or a folder of DeePMD systems.
        format: see the module docstring.
        type_map: element symbols of the DeePMD types, for systems without ``type_map.raw``.

    Raises:
        UserError: the path does not exist, the format is unknown, or the file cannot be read.
    """
    path = Path(path)
    check_import_format(format)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    chosen = detect_format(path) if format == "auto" else format
    if chosen == "deepmd":
        from .deepmd import iter_deepmd

        yield from iter_deepmd(path, type_map=type_map)
        return
    if path.is_dir():
        raise UserError(f"{path} is a folder; only the deepmd format reads folders")
    if chosen == "store":
        from .store import FrameStore

        with FrameStore(path, "r") as store:
            yield from store.iter_frames()
        return
    if chosen == "db":
        yield from _iter_db(path)
        return
    import ase.io

    ase_format = _ASE_NAMES.get(chosen, chosen)
    try:
        yield from ase.io.iread(str(path), index=":", format=ase_format, parallel=False,
                                do_not_split_by_at_sign=True)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure is bad input
        what = f"as {ase_format}" if ase_format else "with ASE"
        raise UserError(f"{path}: cannot read {what} ({type(error).__name__}: {error})") from None


def _iter_db(path: Path) -> Iterator:
    import ase.db

    try:
        db = ase.db.connect(str(path))
        rows = list(db.select())
    except Exception as error:  # noqa: BLE001
        raise UserError(f"{path}: cannot read as an ASE database ({type(error).__name__}: {error})") from None
    for row in rows:
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        yield atoms


def read_frames(path, format: str = "auto", **kwargs) -> list:
    """All frames of ``path`` as a list (see :func:`iter_frames`)."""
    return list(iter_frames(path, format, **kwargs))


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        if out.is_dir() and not any(out.iterdir()):
            return
        raise UserError(f"{out} exists (choose another name, or overwrite it with --force)")


def write_extxyz(out, chunks: Iterable[Sequence], overwrite: bool = False) -> int:
    """Write frames (ASE ``Atoms`` with a calculator, given as an iterable of lists) to one
    extended-XYZ file; returns the number written."""
    import ase.io

    out = Path(out)
    _check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out, "w") as handle:
        for chunk in chunks:
            chunk = list(chunk)
            if chunk:
                ase.io.write(handle, chunk, format="extxyz", parallel=False)
                count += len(chunk)
    return count


def export_store(store, out, format: str = "extxyz", *, indices=None, overwrite: bool = False,
                 chunk_size: int = 1024, **kwargs) -> int:
    """Write frames of a :class:`~acnn_mpi.data.store.FrameStore` (``indices``, default all) to
    ``out`` in ``format`` (extxyz: a file; deepmd: a folder of systems). Returns frames written.

    Raises:
        UserError: unknown format, or ``out`` exists and ``overwrite`` is false.
    """
    if format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {format!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if format == "deepmd":
        from .deepmd import write_deepmd

        return write_deepmd(store, out, indices=indices, overwrite=overwrite, **kwargs)
    chunks = (arrays.to_atoms() for arrays in store.iter_arrays(chunk_size, indices))
    return write_extxyz(out, chunks, overwrite=overwrite)


def write_frames(out, frames: Sequence, format: str = "extxyz", *, overwrite: bool = False,
                 **kwargs) -> int:
    """Write labelled ASE ``Atoms`` (validated; see :func:`~acnn_mpi.data.validate.validate_frames`)
    to ``out`` in ``format``; returns frames written."""
    from .frames import FrameArrays, LabelKeys

    if format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {format!r}: use one of {', '.join(EXPORT_FORMATS)}")
    arrays = FrameArrays.from_atoms(list(frames), kwargs.pop("label_keys", LabelKeys()))
    return export_store(_InMemory(arrays), out, format, overwrite=overwrite, **kwargs)


class _InMemory:
    """The read interface of a FrameStore over packed arrays already in memory."""

    def __init__(self, arrays):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def _all(self, indices):
        import numpy as np

        return np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)

    def read_arrays(self, indices=None):
        return self.arrays.take(self._all(indices))

    def iter_arrays(self, chunk_size: int = 1024, indices=None):
        idx = self._all(indices)
        for start in range(0, len(idx), chunk_size):
            yield self.arrays.take(idx[start:start + chunk_size])
