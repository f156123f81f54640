"""ACNN.save / ACNN.load: exact round trip; corrupt, foreign and other-version files refused."""

import pickle

import pytest
import torch

from acnn_mpi.model.forces import evaluate
from acnn_mpi.model.potential import FORMAT_TAG, FORMAT_VERSION, ACNN
from acnn_mpi.state import Batch


def test_round_trip_is_exact(make_model, crystal, tmp_path):
    model = make_model(attention_layers=1)
    batch = Batch.from_atoms([crystal(["Mg", "Ca", "H", "H", "H"], volume_per_atom=9.0)])
    model.fit_descriptor_statistics(batch)
    model.set_reference_energies({"Mg": -1.5, "Ca": -2.0, "H": -3.25})
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = ACNN.load(path)
    assert loaded.elements == ["Mg", "Ca", "H"]
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.dtype == torch.float64
    assert loaded.reference_energies.tolist() == [-1.5, -2.0, -3.25]
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    before, after = evaluate(model, batch), evaluate(loaded, batch)
    assert torch.equal(before.energy, after.energy)
    assert torch.equal(before.forces, after.forces)
    assert torch.equal(before.stress, after.stress)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT_TAG and payload["version"] == FORMAT_VERSION
    assert payload["hyperparameters"]["elements"] == ["Mg", "Ca", "H"]


def test_float32_model_saves_as_float32(make_model, tmp_path):
    model = make_model().to(torch.float32)
    model.save(tmp_path / "m.pt")
    loaded = ACNN.load(tmp_path / "m.pt", map_location="cpu")
    assert loaded.dtype == torch.float32 and loaded.hyperparameters.dtype == "float32"


def test_corrupt_file_is_refused(make_model, tmp_path):
    path = tmp_path / "model.pt"
    make_model().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model.pt is not an ACNN model file written by ACNN.save .*corrupt or truncated"):
        ACNN.load(path)


@pytest.mark.parametrize("kind", ["text", "tensor", "dict", "pickle"])
def test_foreign_file_is_refused(tmp_path, kind):
    path = tmp_path / "other.pt"
    if kind == "text":
        path.write_text("elements: [Mg, H]\n")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "dict":
        torch.save({"model": {"weight": torch.ones(2)}, "epoch": 3}, path)
    else:
        path.write_bytes(pickle.dumps(object()))
    with pytest.raises(ValueError, match=r"other.pt is not an ACNN model file written by ACNN.save \(format 'acnn_mpi.ACNN', version 1\)") as err:
        ACNN.load(path)
    if kind == "text":
        assert "not a torch file at all (it starts with b'elements: [Mg, H" in str(err.value)
    if kind == "pickle":
        assert "Python objects other than tensors" in str(err.value)
    if kind == "tensor":
        assert "it holds a Tensor" in str(err.value)
    if kind == "dict":
        assert "a dict without a format tag, keys ['epoch', 'model']" in str(err.value)


def test_other_format_version_is_refused(make_model, tmp_path):
    path = tmp_path / "model.pt"
    make_model().save(path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ValueError, match="format version 99; this acnn_mpi reads version 1"):
        ACNN.load(path)


def test_damaged_contents_are_refused(make_model, tmp_path):
    path = tmp_path / "model.pt"
    make_model().save(path)
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["fitting.head.weight"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match="damaged ACNN model file"):
        ACNN.load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ACNN.load(tmp_path / "nope.pt")
