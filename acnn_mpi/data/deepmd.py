"""DeePMD-kit npy systems: read them as labelled frames, write training sets as them.

A system is a folder holding ``type.raw`` (one type index per atom, the same for every frame),
``type_map.raw`` (the element symbol of each type), an empty file ``nopbc`` for non-periodic
systems, and sets ``set.000``, ``set.001``, ... each with, for its F frames of n atoms,
``coord.npy`` (F, 3n) Å, ``box.npy`` (F, 9) Å, ``energy.npy`` (F,) eV, ``force.npy`` (F, 3n) eV/Å
and optionally ``virial.npy`` (F, 9) eV. The virial is W = -V σ with σ the stress in ASE's sign,
so σ = -W / V on reading. ``real_atom_types.npy`` (F, n) (DeePMD's mixed-type sets) overrides the
types frame by frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import UserError
from .frames import Labels, labelled_atoms, reduced_formula

#: Frames per ``set.NNN`` folder written (dpdata's default).
SET_SIZE = 5000


def find_systems(root) -> list[Path]:
    """``root`` if it is a DeePMD system, else every system below it (sorted)."""
    root = Path(root)
    if (root / "type.raw").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("type.raw"))


def _load(path: Path, frames: int, width: Optional[int], required: bool = True):
    if not path.is_file():
        if required:
            raise UserError(f"{path}: missing (a DeePMD set needs coord.npy and energy.npy)")
        return None
    data = np.load(path)
    try:
        return data.reshape(frames, -1) if width is None else data.reshape(frames, width)
    except ValueError:
        raise UserError(f"{path}: shape {data.shape} does not fit {frames} frames"
                        + (f" of {width} values" if width else "")) from None


def iter_deepmd(root, type_map: Optional[Sequence[str]] = None) -> Iterator:
    """Frames of every DeePMD system at or below ``root`` (ASE ``Atoms`` with a
    SinglePointCalculator: energy, forces, and stress where a virial is given).

    Args:
        type_map: element symbols of the types, for systems without ``type_map.raw`` (a system's
            own ``type_map.raw`` wins).
    """
    from ase import Atoms

    systems = find_systems(root)
    if not systems:
        raise UserError(f"{root}: no DeePMD system (no type.raw) in this folder or below it")
    for system in systems:
        types = np.loadtxt(system / "type.raw", dtype=np.int64, ndmin=1)
        names = _type_map(system, type_map)
        periodic = not (system / "nopbc").exists()
        sets = sorted(p for p in system.glob("set.*") if p.is_dir())
        if not sets:
            raise UserError(f"{system}: no set.* folders")
        n = len(types)
        for folder in sets:
            energy = np.load(folder / "energy.npy") if (folder / "energy.npy").is_file() else None
            if energy is None:
                raise UserError(f"{folder / 'energy.npy'}: missing (a DeePMD set needs coord.npy "
                                "and energy.npy)")
            frames = int(np.asarray(energy).size)
            energy = np.asarray(energy, dtype=np.float64).reshape(frames)
            coord = _load(folder / "coord.npy", frames, 3 * n).reshape(frames, n, 3)
            box = _load(folder / "box.npy", frames, 9, required=periodic)
            forces = _load(folder / "force.npy", frames, 3 * n, required=False)
            virial = _load(folder / "virial.npy", frames, 9, required=False)
            real_types = _load(folder / "real_atom_types.npy", frames, n, required=False)
            for f in range(frames):
                frame_types = types if real_types is None else real_types[f].astype(np.int64)
                if frame_types.min() < 0 or frame_types.max() >= len(names):
                    raise UserError(f"{system}: type index {int(frame_types.max())} has no entry in "
                                    f"the type map {list(names)}")
                cell = box[f].reshape(3, 3) if box is not None else np.zeros((3, 3))
                atoms = Atoms(symbols=[names[t] for t in frame_types], positions=coord[f], cell=cell,
                              pbc=periodic)
                stress = None
                if virial is not None:
                    volume = abs(np.linalg.det(cell))
                    stress = -virial[f].reshape(3, 3) / volume if volume > 1e-9 else None
                labels = Labels(energy=float(energy[f]),
                                forces=None if forces is None else forces[f].reshape(n, 3),
                                stress=stress)
                yield labelled_atoms(atoms, labels)


def _type_map(system: Path, given: Optional[Sequence[str]]) -> list[str]:
    from ..elements import validate_symbols

    path = system / "type_map.raw"
    if path.is_file():
        names = path.read_text().split()
        return validate_symbols(names, f"{path}")
    if given:
        return validate_symbols(list(given), "type map")
    raise UserError(f"{system}: no type_map.raw; give the element of each type (--type-map Cu Au)")


def write_deepmd(source, out, *, indices=None, overwrite: bool = False,
                 set_size: int = SET_SIZE, type_map: Optional[Sequence[str]] = None) -> int:
    """Write frames of a frame store (or anything with its ``read_arrays``/``iter_arrays``) as
    DeePMD systems under the folder ``out``: one system per distinct atom sequence, periodicity
    and presence of stress, named ``sys.NNNN.<formula>``; every system shares one ``type_map.raw``
    (``type_map`` if given, else the elements present by atomic number). Returns frames written.

    Raises:
        UserError: ``out`` exists and is not an empty folder (unless ``overwrite``), frames are
            periodic along only some axes (DeePMD has no such systems), or ``type_map`` misses an
            element.
    """
    import shutil

    from ase.data import chemical_symbols

    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} exists and is not a folder")
        if overwrite:  # remove earlier exports only, never anything else in the folder
            for old in out.glob("sys.[0-9][0-9][0-9][0-9].*"):
                shutil.rmtree(old)
        if any(out.iterdir()):
            raise UserError(f"{out} is not empty (choose another folder"
                            + (")" if overwrite else ", or replace an earlier export with --force)"))
    # pass 1: group frames (bounded memory: only the group keys are kept)
    groups: dict[tuple, list[int]] = {}
    elements: set[int] = set()
    position = 0
    idx_all = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    mixed = []
    for arrays in source.iter_arrays(4096, idx_all):
        offsets = arrays.offsets
        for b in range(len(arrays)):
            numbers = arrays.numbers[offsets[b]:offsets[b + 1]]
            pbc = arrays.pbc[b]
            if pbc.any() and not pbc.all():
                mixed.append(int(idx_all[position + b]))
            key = (numbers.astype(np.int16).tobytes(), bool(pbc.all()), bool(arrays.has_stress[b]))
            groups.setdefault(key, []).append(int(idx_all[position + b]))
        elements.update(np.unique(arrays.numbers).tolist())
        position += len(arrays)
    if mixed:
        raise UserError(f"{len(mixed)} frame(s) are periodic along only some axes (e.g. frame "
                        f"{mixed[0]}), which DeePMD cannot represent; export the others with "
                        "filters (--source/--iteration) or as extxyz")
    if type_map is None:
        names = [chemical_symbols[z] for z in sorted(elements)]
    else:
        names = list(type_map)
        missing = sorted({chemical_symbols[z] for z in elements} - set(names))
        if missing:
            raise UserError(f"type map {names} lacks {', '.join(missing)}")
    type_index = {name: i for i, name in enumerate(names)}
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for k, ((numbers_key, periodic, with_stress), members) in enumerate(groups.items()):
        numbers = np.frombuffer(numbers_key, dtype=np.int16).astype(np.int64)
        system = out / f"sys.{k:04d}.{reduced_formula(numbers)}"
        system.mkdir()
        (system / "type_map.raw").write_text("".join(f"{n}\n" for n in names))
        (system / "type.raw").write_text("".join(f"{type_index[chemical_symbols[z]]}\n" for z in numbers))
        if not periodic:
            (system / "nopbc").write_text("")
        for s, start in enumerate(range(0, len(members), set_size)):
            arrays = source.read_arrays(members[start:start + set_size])
            frames = len(arrays)
            folder = system / f"set.{s:03d}"
            folder.mkdir()
            np.save(folder / "coord.npy", arrays.positions.reshape(frames, -1))
            np.save(folder / "box.npy", arrays.cell.reshape(frames, 9))
            np.save(folder / "energy.npy", arrays.energy)
            np.save(folder / "force.npy", arrays.forces.reshape(frames, -1))
            if with_stress:
                volume = np.abs(np.linalg.det(arrays.cell))
                virial = -volume[:, None, None] * arrays.stress
                np.save(folder / "virial.npy", virial.reshape(frames, 9))
            written += frames
    return written
