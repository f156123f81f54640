"""Selection for labelling: no minimum labelled twice (against the labels of earlier iterations),
and a converged structure never hidden behind an unconverged or unphysical duplicate."""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from acnn_mpi.campaign.processing import select_for_labelling
from acnn_mpi.config import load_config
from acnn_mpi.csp.export import read_relax_results
from acnn_mpi.csp.fingerprints import FingerprintSettings, fingerprints
from acnn_mpi.data.store import FrameStore
from acnn_mpi.relax.runner import RelaxResult
from acnn_mpi.relax.shards import ShardWriter, shard_path
from tests.campaign.test_export import labelled

TINY = Path(__file__).with_name("tiny.yaml")  # Cu-Pt, L_max 2, C_max 3


def l12(a=3.75):
    return Atoms("PtCu3", cell=[a] * 3, pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def result(atoms, structure_id, h_per_atom, status="converged"):
    h = h_per_atom * len(atoms)
    return RelaxResult(atoms=atoms, energy=h, enthalpy=h, volume=atoms.get_volume(), steps=5, status=status,
                       reason="" if status == "converged" else "step limit", structure_id=structure_id,
                       max_force=0.01, pressure_residual=0.0)


def test_labelled_minima_are_not_selected_again_and_failures_hide_nothing(tmp_path):
    config = load_config(TINY)
    labels = tmp_path / "labels.h5"
    with FrameStore(labels, mode="a") as store:  # iteration 0 labelled fcc Cu and fcc Pt
        store.append([labelled(bulk("Cu", "fcc", a=3.6), 1), labelled(bulk("Pt", "fcc", a=3.92), 2)],
                     source="initial", iteration=0)
    rattled = l12()
    rattled.rattle(0.002, seed=3)
    results = [
        result(bulk("Cu", "fcc", a=3.61), 1000, -0.10),          # fcc Cu again: labelled before
        result(bulk("Cu", "bcc", a=2.87), 1001, -0.05),          # bcc Cu: new
        result(rattled, 1002, -0.50, status="not_converged"),    # the L12 minimum, not converged, lower
        result(l12(), 1003, -0.30),                              # the L12 minimum, converged
        result(bulk("Pt", "fcc", a=3.93), 1004, 0.0),            # fcc Pt again: labelled before
    ]
    settings = FingerprintSettings(cutoff=config.search.fingerprint_cutoff)
    relax_dir = tmp_path / "relax"
    ShardWriter(shard_path(relax_dir, 0)).append(
        results, {"fingerprints": fingerprints([r.atoms for r in results], config.elements, settings)})
    relaxed = read_relax_results(relax_dir, 0.0, config.elements, columns=("fingerprints",))
    selection = select_for_labelling(config, relaxed, 1, labels_path=labels)
    why = dict(zip(selection.ids, selection.reasons))
    assert 1000 not in why and 1004 not in why and selection.n_labelled_before == 2
    assert why[1003] == "hull"       # not hidden behind its lower, unconverged duplicate 1002
    assert why[1001] == "hull"       # the next Cu structure takes the labelled one's place
    # without the labels the same minima are selected: the labels are what drops them
    again = select_for_labelling(config, relaxed, 1)
    assert {1000, 1003} <= set(again.ids) and again.n_labelled_before == 0


def test_dedup_sharded_over_ranks_finds_the_same_representatives(tmp_path):
    """Each rank dedups the compositions given to it; their union is the serial answer."""
    from acnn_mpi.campaign.processing import composition_keys, distinct_on_ranks
    from acnn_mpi.parallel.comm import Comm

    config = load_config(TINY)
    results = []
    for k in range(12):  # three minima (fcc Cu, bcc Cu, L12), each relaxed four times
        atoms = [bulk("Cu", "fcc", a=3.6), bulk("Cu", "bcc", a=2.87), l12()][k % 3]
        atoms.rattle(1e-4, seed=k)
        results.append(result(atoms, 2000 + k, [-0.1, -0.05, -0.3][k % 3] + 1e-5 * k))
    settings = FingerprintSettings(cutoff=config.search.fingerprint_cutoff)
    ShardWriter(shard_path(tmp_path, 0)).append(
        results, {"fingerprints": fingerprints([r.atoms for r in results], config.elements, settings)})
    relaxed = read_relax_results(tmp_path, 0.0, config.elements, columns=("fingerprints",), lazy=True)
    keys = composition_keys(relaxed, config.elements)
    h = relaxed.enthalpy / relaxed.n_atoms
    serial = distinct_on_ranks(Comm(None), config, relaxed, keys, h)
    assert sorted(relaxed.ids[serial].tolist()) == [2000, 2001, 2002]

    class Rank(Comm):  # rank r of 2, gathering only its own part
        def __init__(self, rank):
            super().__init__(None)
            self.rank, self.size = rank, 2

        @property
        def is_root(self):
            return True

    union = distinct_on_ranks(Rank(0), config, relaxed, keys, h) | distinct_on_ranks(Rank(1), config, relaxed, keys, h)
    np.testing.assert_array_equal(union, serial)
