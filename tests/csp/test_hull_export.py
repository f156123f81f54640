"""`hull` on the relax command's HDF5 output, with symmetrised exports of the phases it finds."""

import json

import numpy as np
import pytest
from ase.io import read

from acnn_mpi.csp.export import read_relax_results, read_results
from acnn_mpi.csp.hull import convex_hull
from acnn_mpi.relax.runner import RelaxResult
from acnn_mpi.relax.shards import ShardWriter, shard_path
from tests.csp.test_hull import _frames

PRESSURE_GPA = 2.0


def write_relax_dir(directory):
    """The Mg-H frames of tests/csp/test_hull.py as two ranks' shards of a relax job."""
    results = []
    for atoms in _frames():
        atoms = atoms.copy()
        atoms.rattle(0.005, seed=int(atoms.info["structure_id"]))
        enthalpy = float(atoms.info["enthalpy"])
        volume = atoms.get_volume()
        energy = enthalpy - PRESSURE_GPA / 160.21766208 * volume
        results.append(RelaxResult(atoms=atoms, energy=energy, enthalpy=enthalpy, volume=volume, steps=5,
                                   status=atoms.info.get("status", "converged"),
                                   reason=atoms.info.get("reason", ""),
                                   structure_id=int(atoms.info["structure_id"]), max_force=0.001,
                                   pressure_residual=0.01, pressure=PRESSURE_GPA,
                                   pressure_target=PRESSURE_GPA))
    for rank, part in enumerate((results[:3], results[3:])):
        ShardWriter(shard_path(directory, rank), rank=rank, 
                    pressure_gpa=PRESSURE_GPA).append(part)
    return results


def test_relax_directory_reads_as_a_result_set(tmp_path):
    written = write_relax_dir(tmp_path)
    results = read_results(tmp_path, elements=["Mg", "H"])
    assert results.pressure == PRESSURE_GPA and results.elements == ["Mg", "H"]
    by_id = {int(i): k for k, i in enumerate(results.ids)}
    for r in written:
        k = by_id[r.structure_id]
        assert results.enthalpy[k] == pytest.approx(r.enthalpy)
        assert results.counts[k].tolist() == [r.atoms.get_chemical_symbols().count(s) for s in ("Mg", "H")]
        assert results.converged[k] == (r.status == "converged")
        assert results.physical[k] == (r.status != "unphysical")
        np.testing.assert_allclose(results.load(k).positions, r.atoms.positions)
    # the counts are int16 (6 B per row, not 24 at 10⁶ structures) and give the int64 counts' hull
    assert results.counts.dtype == np.int16
    hull = convex_hull(results.counts, results.enthalpy, results.elements)
    wide = convex_hull(results.counts.astype(np.int64), results.enthalpy, results.elements)
    np.testing.assert_array_equal(hull.e_hull, wide.e_hull)
    np.testing.assert_array_equal(hull.stable, wide.stable)
    # another pressure: H moves by ΔP·V
    at_zero = read_relax_results(tmp_path / "shards" / "rank0000-A.h5", pressure=0.0, elements=["Mg", "H"])
    pv = PRESSURE_GPA / 160.21766208 * results.volume  # eV
    np.testing.assert_allclose(at_zero.enthalpy, results.enthalpy - pv)


def test_hull_command_on_relax_output_exports_symmetrised_phases(acnn, tmp_path):
    write_relax_dir(tmp_path / "relax")
    out = acnn(["hull", tmp_path / "relax", "--ehull-max", "0.02", "--elements", "Mg,H",
                "--export-cif", tmp_path / "cif", "--export-poscar", tmp_path / "cif"], timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6 structures (5 converged and physical), 3 compositions, 3 stable phases" in out.stdout
    assert "symmetrised structures (symprec 0.1 Å" in out.stdout
    index = json.loads((tmp_path / "cif" / "index.json").read_text())["structures"]
    by_id = {s["structure_id"]: s for s in index}
    assert sorted(by_id) == [10, 11, 12, 13]
    rutile = by_id[13]
    assert (rutile["space_group"], rutile["space_group_number"], rutile["stable"]) == ("P4_2/mnm", 136, True)
    assert sorted(s["wyckoff"] for s in rutile["wyckoff_sites"]) == ["2a", "4f"]
    assert rutile["symprec_angstrom"] == 0.1 and rutile["e_hull_meV_per_atom"] == 0.0
    fcc = by_id[11]
    assert fcc["space_group"] == "Fm-3m" and not fcc["stable"]
    assert fcc["e_hull_meV_per_atom"] == pytest.approx(10.0)
    assert (fcc["conventional_atoms"], fcc["primitive_atoms"]) == (4, 1)
    name = fcc["name"]
    assert len(read(tmp_path / "cif" / f"{name}.cif")) == 4
    assert len(read(tmp_path / "cif" / "primitive" / f"{name}.vasp")) == 1
