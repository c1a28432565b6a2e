import json

import numpy as np
import pytest
import torch

from sigformer.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from sigformer.models import create_model


@pytest.mark.parametrize("name,kwargs", [
    ("dbconformer", dict(preset="bnci2014001")),
    ("braindecode.EEGNet", dict(n_chans=8, n_outputs=3, n_times=256)),  # parametrized weights
])
def test_round_trip_gives_identical_outputs(tmp_path, name, kwargs):
    model = create_model(name, **kwargs).eval()
    path = save_checkpoint(tmp_path / "ckpt", model, extra={"classes": ["a", "b"]})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded, config = load_checkpoint(path)
    assert config["extra"] == {"classes": ["a", "b"]} and config["model"] == name
    x = torch.randn(2, model.n_chans, model.n_times)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_chs_info_survives_json(tmp_path):
    from sigformer.channels import ChannelSet

    chs = ChannelSet.from_names(["C3", "Cz", "C4"]).with_montage().to_chs_info()
    model = create_model("dbconformer", chs_info=chs, n_outputs=2, n_times=501)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "c", model))
    assert [c["ch_name"] for c in loaded.chs_info] == ["C3", "Cz", "C4"]
    np.testing.assert_allclose(loaded.chs_info[0]["loc"][:3], chs[0]["loc"][:3])


def test_truncated_or_corrupt_weights(tmp_path):
    path = save_checkpoint(tmp_path / "c", create_model("dbconformer", preset="bnci2014001"))
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_config_problems_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json missing"):
        read_config(tmp_path / "empty")
    path = save_checkpoint(tmp_path / "c", create_model("dbconformer", preset="bnci2014001"))
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save_checkpoint(tmp_path / "c", create_model("dbconformer", preset="bnci2014001"))
    config = json.loads((path / "config.json").read_text())
    config["kwargs"]["n_outputs"] = 4
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit model 'dbconformer'"):
        load_checkpoint(path)


def test_save_leaves_no_partial_files(tmp_path, monkeypatch):
    model = create_model("dbconformer", preset="bnci2014001")
    path = save_checkpoint(tmp_path / "c", model)
    before = (path / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("sigformer.checkpoint_io.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    # the earlier checkpoint is intact and no temporary file is left behind
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_model_without_registry_name_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="unknown model name"):
        save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2))
