"""create_model(name, preset, weights=...): a preset must agree with what the weights were
built with (merging the two used to build a model of neither)."""

from __future__ import annotations

import pytest
import torch

from sigformer.checkpoint import CheckpointError
from sigformer.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def small_clst(tmp_path):
    """A ClST bundle built from the 'small' preset (three stages) with its own n_outputs."""
    torch.manual_seed(0)
    return create_model("clst", "small", n_outputs=5).save_pretrained(tmp_path / "clst")


def test_conflicting_preset_names_its_keys_and_the_recorded_kwargs(small_clst):
    with pytest.raises(CheckpointError) as err:
        create_model("clst", "tiny", weights=small_clst)
    message = str(err.value)
    assert "preset 'tiny' of 'clst' does not match the weights" in message
    assert "'depths': [1, 1]" in message and "'dims': [16, 32]" in message  # the preset's
    assert "'dims': [16, 32, 64]" in message and "'n_outputs': 5" in message  # recorded
    assert "differ on ['depths', 'dims', 'heads', 'kernel_sizes', 'strides']" in message


def test_agreeing_preset_still_loads_the_weights(small_clst):
    plain = create_model("clst", weights=small_clst)
    for preset in ("small", "paper"):  # the same values, or none at all
        again = create_model("clst", preset, weights=small_clst)
        assert _same_weights(again, plain)
        assert again.sigformer_config["kwargs"]["n_outputs"] == 5


def test_preset_keys_given_explicitly_are_not_compared(tmp_path):
    """Explicit arguments win over both the preset and the recorded ones."""
    torch.manual_seed(0)
    folder = create_model("tfm_encoder", "tiny", n_outputs=3).save_pretrained(tmp_path / "e")
    with pytest.raises(CheckpointError, match=r"differ on \['n_outputs'\]"):
        create_model("tfm_encoder", "tuev", weights=folder)  # tuev: 6 classes
    # the recorded architecture, the preset's n_outputs overridden by the caller
    model = create_model("tfm_encoder", "tuev", weights=folder, n_outputs=3)
    assert _same_weights(model, create_model("tfm_encoder", weights=folder))


def test_other_n_outputs_loads_the_body_and_swaps_the_head(small_clst, tmp_path):
    pretrained = create_model("clst", weights=small_clst)
    with pytest.warns(UserWarning, match="head re-initialised: 5 -> 3 outputs"):
        model = create_model("clst", weights=small_clst, n_outputs=3).eval()
    assert model(torch.zeros(2, 2, 128)).shape == (2, 3)
    body = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("head.")}
    own = model.state_dict()
    assert body and all(torch.equal(own[k], v) for k, v in body.items())
    assert "head re-initialised: 5 -> 3" in str(model.pretrained_report_)
    # the new size is what it records, so it saves and rebuilds as a 3-output model
    again = create_model("clst", weights=model.save_pretrained(tmp_path / "three"))
    assert again.sigformer_config["kwargs"]["n_outputs"] == 3 and _same_weights(again, model)
    assert create_model("clst", weights=small_clst, n_outputs=5).pretrained_report_.notes == []


def test_weights_whose_kwargs_record_a_preset_load(tmp_path):
    from sigformer.checkpoint import load_checkpoint, save_checkpoint
    from sigformer.models import create_model

    model = create_model("vtcnn2", "paper")
    folder = save_checkpoint(tmp_path / "pb", model, kwargs={"preset": "paper"})
    loaded = create_model("vtcnn2", weights=folder)
    reference, _ = load_checkpoint(folder)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 reference.state_dict().values()))
    # the same preset named by the caller agrees with the recorded one
    assert _same_weights(create_model("vtcnn2", "paper", weights=folder), reference)


def test_official_safetensors_beside_a_hub_config_still_load(tmp_path):
    # a Hugging Face snapshot: official weights next to its own config.json
    import json

    from safetensors.torch import save_file

    from sigformer.models import create_model
    from sigformer.models.convert import ConversionError

    model = create_model("mossformer", "tiny")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MossFormer"]}))
    try:
        create_model("mossformer", "tiny", weights=tmp_path / "model.safetensors")
    except ConversionError as err:
        assert "weights file of a sigformer bundle" not in str(err)
