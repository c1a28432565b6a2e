"""Review of the OFDM numerics (fifteenth session): pretrained estimators and training files
checked against the run's SNR definition and channel profile, DeepMIMO slots under either SNR
definition, and a genie LMMSE that does not keep a filter per slot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from repo_scripts import load_script
from test_ofdm_pretrained import TINY_GRID, run_pipeline, trained  # noqa: F401 (fixture)

from sigformer.data.ofdm import OFDMConfig, simulate_ofdm
from sigformer.rf.channel_estimation import GenieLMMSE, _pilot_index, channel_correlation


def direct_genie(data) -> np.ndarray:
    """The textbook filter W = R_hp (R_pp + sigma^2 I)^-1, one slot at a time."""
    cfg = data.config
    idx = _pilot_index(cfg)
    out = []
    for i in range(len(data)):
        r = channel_correlation(cfg, data.profile, data.delay_spread_ns[i], data.doppler_hz[i])
        a = r[np.ix_(idx, idx)] + float(np.float32(data.noise_var[i])) * np.eye(len(idx))
        w = np.linalg.solve(a.T, r[:, idx].T).T
        out.append(w @ data.ls[i].reshape(-1))
    return np.stack(out).reshape(len(data), *cfg.grid_shape)


@pytest.mark.parametrize("snr_definition", ["pilot", "measured_grid"])
def test_the_genie_equals_the_textbook_filter_and_caches_per_condition(snr_definition):
    config = OFDMConfig(**TINY_GRID)
    data = simulate_ofdm(6, snr_db=[0, 25], delay_spread_ns=[50, 300], doppler_hz=[100],
                         config=config, seed=3, snr_definition=snr_definition)
    genie = GenieLMMSE("A")
    got = genie.predict(data)
    want = direct_genie(data)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    # one decomposition per (delay spread, Doppler), whatever the per-slot noise variances
    assert len(genie._cache) == len({(d, f) for d, f in zip(data.delay_spread_ns,
                                                              data.doppler_hz)})


def test_a_bundle_of_another_snr_definition_is_refused(tmp_path, trained):  # noqa: F811
    bundle, _ = trained
    code, _ = run_pipeline(tmp_path, "snr", {"snr_definition": "measured_grid", "models": [
        {"name": "adafortitran", "weights": str(bundle)}]})
    assert code == 2


def test_a_bundle_of_another_profile_is_a_noted_transfer_test(tmp_path, trained, capsys):  # noqa: F811
    bundle, _ = trained
    code, out = run_pipeline(tmp_path, "tdld", {"profile": "D", "models": [
        {"name": "adafortitran", "weights": str(bundle)}]}, "--pretrained")
    assert code == 0
    assert "trained on TDL-A channels, tested here on TDL-D" in capsys.readouterr().out


def test_a_training_file_of_other_channels_is_refused(tmp_path, capsys):
    config = OFDMConfig(**TINY_GRID)
    simulate_ofdm(32, config=config, profile="D", seed=0).save(tmp_path / "d.npz")
    code, _ = run_pipeline(tmp_path, "file", {"train_file": str(tmp_path / "d.npz"),
                                              "models": [{"name": "ofdm_linear",
                                                          "max_epochs": 1}]})
    assert code == 2
    assert "holds TDL-D slots" in capsys.readouterr().err


def test_deepmimo_slots_follow_the_snr_definition(tmp_path):
    from test_ofdm import _write_fake_deepmimo

    from sigformer.data.deepmimo import deepmimo_ofdm_dataset, read_deepmimo

    _write_fake_deepmimo(tmp_path / "scene")
    links = read_deepmimo(tmp_path / "scene")
    pilot = deepmimo_ofdm_dataset(links, snr_db=10)
    grid = deepmimo_ofdm_dataset(links, snr_db=10, snr_definition="measured_grid")
    assert pilot.snr_definition == "pilot" and grid.snr_definition == "measured_grid"
    np.testing.assert_allclose(pilot.noise_var, 0.1)
    config = pilot.config
    density = len(_pilot_index(config)) / (config.n_subcarriers * config.n_symbols)
    # unit-power channels, unit-modulus pilots: the received grid holds the pilots' power
    np.testing.assert_allclose(grid.noise_var, 0.1 * density, rtol=0.05)
    with pytest.raises(ValueError, match="snr_definition must be one of"):
        deepmimo_ofdm_dataset(links, snr_definition="measured")


def test_the_benchmark_refuses_a_checkpoint_of_another_pilot_pattern(trained):  # noqa: F811
    bundle, _ = trained  # trained on the tiny test grid, not the reference grid
    bench = load_script("benchmarks/ofdm.py")
    with pytest.raises(SystemExit, match="another grid/pilot pattern"):
        bench.load_pretrained([str(bundle)], OFDMConfig())
    config = json.loads((bundle / "config.json").read_text())["extra"]["ofdm_config"]
    assert bench.load_pretrained([str(bundle)], OFDMConfig.from_dict(config))[0]
