"""OFDM simulator, classical estimators, AdaFortiTran / FortiTran / linear, DeepMIMO, pipeline."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigformer.checkpoint import load_checkpoint, save_checkpoint
from sigformer.data.deepmimo import deepmimo_ofdm_dataset, read_deepmimo, read_deepmimo_bs
from sigformer.data.io import DataError
from sigformer.data.ofdm import (
    OFDMConfig,
    OFDMDataset,
    simulate_ofdm,
    simulate_sweeps,
    tdl_profile,
)
from sigformer.models import create_model
from sigformer.rf.channel_estimation import (
    GenieLMMSE,
    SampleLMMSE,
    channel_correlation,
    linear_interp_matrix,
    ls_interpolate,
    nmse_db,
)
from sigformer.rf.ofdm import (
    ModelEstimator,
    check_model_config,
    evaluate_sweeps,
    train_channel_estimator,
)

DEEPMIMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "ofdm" / \
    "deepmimo_new_york_3p5GHz"


def _pilots_of(data: OFDMDataset) -> np.ndarray:
    cfg = data.config
    return data.channels[:, cfg.pilot_subcarriers[:, None], list(cfg.pilot_symbols)]


# --- parameter counts (rf_models.md 1.2) ---------------------------------------------------

@pytest.mark.parametrize("name, pilots, expected", [
    ("adafortitran", (40, 2), 1_081_826), ("adafortitran", (12, 2), 987_746),
    ("fortitran", (40, 2), 1_007_768), ("fortitran", (12, 2), 913_688),
    ("ofdm_linear", (40, 2), 136_080), ("ofdm_linear", (12, 2), 42_000),
])
def test_parameter_counts_match_reference(name, pilots, expected):
    model = create_model(name, pilot_shape=pilots)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_adafortitran_parameter_breakdown():
    m = create_model("adafortitran")
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m.upsampler) == 136_080
    assert count(m.initial_enhancer) == count(m.refiner) == 4_801
    assert count(m.adapter) == 73_290
    transformer = (count(m.input_projection) + m.positional_encoding.numel()
                   + count(m.encoder) + count(m.output_projection))
    assert transformer == 862_854 and m.positional_encoding.numel() == 65_536


# --- simulator --------------------------------------------------------------------------------

def test_reference_grid_and_pilots():
    cfg = OFDMConfig()
    assert cfg.pilot_shape == (40, 2) and cfg.grid_shape == (120, 14)
    assert cfg.fft_size == 256 and cfg.pilot_mask().sum() == 80
    assert list(np.flatnonzero(cfg.pilot_mask().any(0))) == [2, 11]  # symbols 3 and 12, 1-based
    assert OFDMConfig(pilot_subcarrier_step=10).pilot_shape == (12, 2)


@pytest.mark.parametrize("bad, match", [
    (dict(pilot_symbols=(2, 14)), "pilot_symbols"), (dict(pilot_subcarrier_step=0), "step"),
    (dict(pilot_subcarrier_offset=3), "offset"), (dict(sample_rate=1e6), "smaller"),
])
def test_bad_grid_config_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        OFDMConfig(**bad)


@pytest.mark.parametrize("profile", list("ABCDE"))
def test_tdl_channels_have_unit_power(profile):
    delays, powers, _ = tdl_profile(profile)
    assert powers.sum() == pytest.approx(1.0)
    data = simulate_ofdm(1500, profile=profile, delay_spread_ns=300, doppler_hz=50, seed=3)
    assert np.mean(np.abs(data.channels) ** 2) == pytest.approx(1.0, abs=0.08)


def test_simulation_is_seeded_and_keeps_statistics():
    a = simulate_ofdm(20, seed=7)
    b = simulate_ofdm(20, seed=7)
    c = simulate_ofdm(20, seed=8)
    np.testing.assert_array_equal(a.ls, b.ls)
    assert not np.allclose(a.channels, c.channels)
    stats = a.statistics()
    assert stats.shape == (20, 3)
    assert set(stats[:, 0]) <= {0, 5, 10, 15, 20, 25}
    assert set(stats[:, 2]) <= set(range(50, 1001, 50))


def test_simulated_correlation_matches_the_genie_model():
    """The empirical pilot correlation of the simulator equals the analytic one that the genie
    LMMSE uses (Zheng-Xiao fading has exactly the Jakes J0 ensemble autocorrelation)."""
    data = simulate_ofdm(4000, snr_db=40, delay_spread_ns=150, doppler_hz=400, seed=11)
    cfg = data.config
    h = _pilots_of(data).reshape(len(data), -1)
    empirical = h.T @ h.conj() / len(h)
    k, s = np.meshgrid(cfg.pilot_subcarriers, cfg.pilot_symbols, indexing="ij")
    idx = (k * cfg.n_symbols + s).ravel()
    analytic = channel_correlation(cfg, "A", 150, 400)[np.ix_(idx, idx)]
    assert np.abs(empirical - analytic).max() < 0.1


def test_pilot_snr_definition_sets_ls_error_to_the_noise_variance():
    data = simulate_ofdm(800, snr_db=10, delay_spread_ns=100, doppler_hz=100, seed=2)
    err = np.mean(np.abs(data.ls - _pilots_of(data)) ** 2)
    assert 10 * np.log10(err) == pytest.approx(-10, abs=0.3)


def test_measured_grid_snr_puts_pilots_13_db_above_nominal():
    data = simulate_ofdm(400, snr_db=10, snr_definition="measured_grid", seed=2)
    assert 10 * np.log10(np.mean(data.noise_var)) == pytest.approx(-10 - 13.2, abs=0.6)


def test_ici_switch_adds_interference_only_when_the_channel_moves():
    static = dict(snr_db=60, delay_spread_ns=100, seed=4, n=60)
    plain = simulate_ofdm(doppler_hz=0, **static)
    with_ici = simulate_ofdm(doppler_hz=0, ici=True, **static)
    np.testing.assert_allclose(with_ici.ls, plain.ls, atol=1e-4)
    fast = simulate_ofdm(doppler_hz=1000, ici=True, data_symbols=True, **static)
    ici_power = np.mean(np.abs(fast.ls - _pilots_of(fast)) ** 2)
    assert -30 < 10 * np.log10(ici_power) < -15  # bounded by (2 pi fD T)^2 / 12 ~ -18 dB


def test_dataset_round_trip_without_pickle(tmp_path):
    data = simulate_ofdm(12, seed=1)
    path = data.save(tmp_path / "train.npz")
    back = OFDMDataset.load(path)
    np.testing.assert_array_equal(back.channels, data.channels)
    assert back.config == data.config and back.profile == "TDL-A"
    (tmp_path / "broken.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable"):
        OFDMDataset.load(tmp_path / "broken.npz")


def test_non_finite_or_mismatched_channels_are_rejected():
    data = simulate_ofdm(4, seed=1)
    bad = data.channels.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or Inf"):
        OFDMDataset(bad, data.ls, data.snr_db, data.delay_spread_ns, data.doppler_hz,
                    data.noise_var)
    with pytest.raises(DataError, match="pilot pattern"):
        OFDMDataset(data.channels, data.ls[:, :12], data.snr_db, data.delay_spread_ns,
                    data.doppler_hz, data.noise_var)
    with pytest.raises(DataError, match="must be complex"):
        OFDMDataset(data.channels.real, data.ls, data.snr_db, data.delay_spread_ns,
                    data.doppler_hz, data.noise_var)


# --- classical estimators -----------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(hs.floats(-2, 2), hs.floats(-0.05, 0.05), hs.floats(-0.3, 0.3), hs.floats(-0.05, 0.05))
def test_ls_interpolation_is_exact_for_planar_channels(c0, ck, cl, ckl_imag):
    """Linear interpolation/extrapolation reproduces any channel linear in k and in l."""
    cfg = OFDMConfig()
    k, l_ = np.meshgrid(np.arange(120), np.arange(14), indexing="ij")
    plane = c0 + ck * k + cl * l_ + 1j * ckl_imag * k
    pilots = plane[np.ix_(cfg.pilot_subcarriers, cfg.pilot_symbols)][None]
    np.testing.assert_allclose(ls_interpolate(pilots, cfg)[0], plane, atol=1e-4)


def test_interpolation_weights_sum_to_one():
    w = linear_interp_matrix([2, 11], np.arange(14))
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert w[2, 0] == 1.0 and w[11, 1] == 1.0


def test_genie_lmmse_is_the_bound():
    """Genie LMMSE is at least as good as LS and as LMMSE from sample statistics of the very
    same condition (which converges to it), and far better than LS at low SNR."""
    cond = dict(snr_db=5, delay_spread_ns=200, doppler_hz=300)
    train = simulate_ofdm(3000, seed=1, **cond)
    test = simulate_ofdm(600, seed=2, **cond)
    genie = nmse_db(GenieLMMSE().predict(test), test.channels)
    sample = nmse_db(SampleLMMSE().fit(train).predict(test), test.channels)
    ls = nmse_db(ls_interpolate(test.ls, test.config), test.channels)
    assert genie <= sample + 0.05 and sample - genie < 0.6
    assert genie < ls - 5


def test_genie_bound_is_the_data_profiles_and_refuses_another():
    """TDL-A's genie on TDL-D slots is no bound (-16.0 instead of -19.3 dB at 10 dB): the
    sweeps take each test set's own profile, and a genie refuses another profile's data."""
    data = simulate_ofdm(200, snr_db=10, delay_spread_ns=200, doppler_hz=500, profile="D",
                         seed=4)
    own = nmse_db(GenieLMMSE("tdl-d").predict(data), data.channels)
    with pytest.raises(ValueError, match="cannot bound data of channel profile 'TDL-D'"):
        GenieLMMSE().predict(data)
    row = evaluate_sweeps({}, {"snr": [(10.0, data)]})["points"][0]
    assert row["bound_db"] == pytest.approx(own, abs=1e-9)
    relabelled = dataclasses.replace(data, profile="TDL-A")  # what the default computed
    assert own < nmse_db(GenieLMMSE().predict(relabelled), data.channels) - 2
    with pytest.raises(ValueError, match="cannot bound"):
        evaluate_sweeps({}, {"snr": [(10.0, data)]}, bound=GenieLMMSE("A"))
    with pytest.raises(ValueError, match="unknown TDL profile"):
        GenieLMMSE("TDL-Z")


def test_high_doppler_floors_as_the_issue_states():
    fast = simulate_ofdm(400, seed=3, snr_db=10, delay_spread_ns=100, doppler_hz=1000)
    medium = simulate_ofdm(400, seed=3, snr_db=10, delay_spread_ns=100, doppler_hz=600)
    genie = GenieLMMSE()
    assert nmse_db(genie.predict(fast), fast.channels) == pytest.approx(-5, abs=1.5)
    assert nmse_db(genie.predict(medium), medium.channels) == pytest.approx(-13, abs=1.5)


# --- models -------------------------------------------------------------------------------------

def test_model_input_layouts_and_errors():
    model = create_model("adafortitran", "tiny").eval()
    x = torch.randn(3, 40, 2, dtype=torch.complex64)
    stats = torch.tensor([[10.0, 100, 500]] * 3)
    out = model(x, stats)
    assert out.shape == (3, 120, 14) and out.is_complex()
    torch.testing.assert_close(model(torch.view_as_real(x), stats), out)
    with pytest.raises(ValueError, match=r"\[real, imag\] last"):
        model(torch.randn(3, 40, 2), stats)
    with pytest.raises(ValueError, match="pilot pattern differs"):
        model(torch.randn(3, 12, 2, dtype=torch.complex64), stats)
    with pytest.raises(ValueError, match="needs the channel statistics"):
        model(x)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        model(x, stats[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        model(x * float("nan"), stats)
    with pytest.warns(UserWarning, match="outside the trained range"):
        model(x, torch.tensor([[10.0, 100, 3000]] * 3))
    # FortiTran ignores statistics; so does the linear model
    forti = create_model("fortitran", "tiny").eval()
    assert forti(x).shape == (3, 120, 14)


def test_checkpoint_pilot_mismatch_is_a_clear_error(tmp_path):
    model = create_model("adafortitran", "tiny")
    save_checkpoint(tmp_path / "ckpt", model)
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    x = torch.randn(2, 40, 2, dtype=torch.complex64)
    stats = torch.tensor([[10.0, 100, 500]] * 2)
    torch.testing.assert_close(loaded(x, stats), model.eval()(x, stats))
    other = simulate_ofdm(4, config=OFDMConfig(pilot_subcarrier_step=10), seed=0)
    with pytest.raises(ValueError, match="built for 40 x 2 pilots but the data has 12 x 2"):
        ModelEstimator(loaded).predict(other)
    with pytest.raises(TypeError, match="not an OFDM channel estimator"):
        check_model_config(torch.nn.Linear(2, 2), other.config)


def test_training_learns_and_models_rank_above_ls():
    torch.manual_seed(0)
    train = simulate_ofdm(768, seed=0)
    sweeps = simulate_sweeps(48, sweeps={"snr": {"vary": "snr_db", "values": [0, 10],
                                                 "fixed": {"delay_spread_ns": 100,
                                                           "doppler_hz": 300}}})
    linear = create_model("ofdm_linear")
    hist = train_channel_estimator(linear, train, max_epochs=12, batch_size=64, lr=1e-2)
    losses = hist.series("train_loss")
    assert losses[-1] < 0.5 * losses[0]
    ada = create_model("adafortitran", "tiny")
    hist = train_channel_estimator(ada, train, max_epochs=2, batch_size=64, lr=2e-3)
    assert hist.series("train_loss")[-1] < hist.series("train_loss")[0]
    from sigformer.rf.channel_estimation import LSInterpolation

    result = evaluate_sweeps({"LS": LSInterpolation(), "linear": ModelEstimator(linear),
                              "ada": ModelEstimator(ada)}, sweeps)
    low_snr = result["points"][0]
    assert low_snr["nmse_db"]["linear"] < low_snr["nmse_db"]["LS"] - 3
    for row in result["points"]:  # nothing beats the bound by more than sampling noise
        assert min(row["gap_to_bound_db"].values()) > -0.5


# --- DeepMIMO -----------------------------------------------------------------------------

def _write_fake_deepmimo(folder: Path) -> None:
    from scipy.io import savemat

    folder.mkdir()
    paths = np.zeros((8, 2))
    paths[0] = [0, 90]
    paths[1] = [1e-6, 1.1e-6]
    paths[2] = [-80, -90]
    paths[7] = [1, 0]
    cells = np.empty((1, 3), dtype=object)
    for i, p in enumerate([paths, np.zeros((8, 0)), paths[:, :1]]):
        cells[0, i] = {"p": p}
    savemat(folder / "BS1_UE_0-3.mat", {"channels": cells, "rx_locs": np.zeros((3, 5)),
                                        "tx_loc": np.zeros((1, 3))})


def test_deepmimo_reader_on_a_generated_scenario(tmp_path):
    _write_fake_deepmimo(tmp_path / "scene")
    links = read_deepmimo(tmp_path / "scene")
    assert [link.user for link in links] == [0, 2] and links[0].los
    assert links[0].delay_spread_s() == pytest.approx(
        np.sqrt(0.1 / 1.1 ** 2) * 0.1e-6, rel=1e-3)  # two paths, powers 1 and 0.1
    data = deepmimo_ofdm_dataset(links, snr_db=20)
    assert data.channels.shape == (2, 120, 14)
    np.testing.assert_allclose(np.mean(np.abs(data.channels) ** 2, axis=(1, 2)), 1, rtol=1e-5)
    np.testing.assert_allclose(np.abs(data.channels[1]), 1, rtol=1e-5)  # one path: flat
    (tmp_path / "BS2_UE_0-1.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match="not a readable DeepMIMO"):
        read_deepmimo_bs(tmp_path / "BS2_UE_0-1.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DeepMIMO user files"):
        read_deepmimo(tmp_path / "empty")


@pytest.mark.skipif(not DEEPMIMO.is_dir(), reason="DeepMIMO scenario not found in "
                    "../shared/data/ofdm (real-data test)")
def test_deepmimo_real_scenario_matches_the_derived_channels():
    links = read_deepmimo(DEEPMIMO)
    derived = np.load(DEEPMIMO / "derived_siso_ofdm_H_64sc_10MHz.npz")
    assert len(links) == len(derived["H"])
    h = np.stack([link.frequency_response(derived["subcarrier_freq_offset_hz"],
                                          relative_delay=False) for link in links])
    assert np.linalg.norm(h - derived["H"]) / np.linalg.norm(derived["H"]) < 1e-5
    assert sum(link.los for link in links) == int(derived["los"].sum())
    data = deepmimo_ofdm_dataset(links, snr_db=10, max_links=300)
    ls = nmse_db(ls_interpolate(data.ls, data.config), data.channels)
    assert ls < -5  # static ray-traced channels interpolate well at 10 dB


# --- pipeline -----------------------------------------------------------------------------

def test_ofdm_pipeline_through_the_cli(tmp_path):
    from sigformer.cli import main

    cfg = {  # 12 x 2 pilots keep the fair sample-LMMSE fit (10 P^2 = 5,760 slots) small
        "name": "ofdm_tiny", "task": "ofdm",
        "ofdm": {"n_train": 64, "n_test_per_point": 8, "grid": {"pilot_subcarrier_step": 10},
                 "models": [{"name": "ofdm_linear", "max_epochs": 1},
                            {"name": "adafortitran", "preset": "tiny", "max_epochs": 1}]},
    }
    path = tmp_path / "p.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(report["sweeps"]) == 17
    assert set(report["sweeps"][0]["nmse_db"]) == {"LS", "LMMSE (sample)", "ofdm_linear",
                                                   "adafortitran:tiny"}
    for name in ("nmse_sweeps.png", "grids.png", "nmse_table.txt"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    model, cfg_json = load_checkpoint(tmp_path / "out" / "models" / "adafortitran_tiny")
    assert cfg_json["extra"]["ofdm_config"]["pilot_symbols"] == [2, 11]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"task": "ofdm", "ofdm": {"snr_definition": "loud"}}))
    assert main(["run", str(bad)]) == 2


# --- fast simulator (issue 13) --------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {}, {"ici": True}, {"ici": True, "data_symbols": True},
    {"profile": "D", "ici": True, "data_symbols": True}, {"profile": "E"},
    {"snr_definition": "measured_grid", "ici": True},
    {"ici": True, "doppler_hz": 30_000.0},  # beyond the Taylor range: the direct ICI path
])
def test_fast_engine_gives_the_reference_slots(kwargs):
    """Same seed, same random draws in the same order: the complex64 matmul engine returns the
    float64 reference formulas' slots within float32 rounding."""
    ref = simulate_ofdm(40, seed=5, engine="reference", chunk=16, **kwargs)
    fast = simulate_ofdm(40, seed=5, engine="fast", chunk=16, **kwargs)
    np.testing.assert_allclose(fast.channels, ref.channels, atol=2e-5, rtol=0)
    np.testing.assert_allclose(fast.ls, ref.ls, atol=5e-5 * np.abs(ref.ls).max(), rtol=0)
    np.testing.assert_allclose(fast.noise_var, ref.noise_var, rtol=1e-5)
    with pytest.raises(ValueError, match="engine must be one of"):
        simulate_ofdm(2, engine="matlab")


@settings(max_examples=30, deadline=None)
@given(hs.floats(0.0, 4.0))
def test_taylor_order_bounds_the_within_symbol_expansion(x):
    """exp(i x u) on u in [-1, 1] from the chosen number of Taylor terms is exact to 1e-8."""
    from math import factorial

    from sigformer.data.ofdm import _taylor_order

    order = _taylor_order(x)
    u = np.linspace(-1, 1, 257)
    series = sum((1j * x * u) ** j / factorial(j) for j in range(order))
    assert np.abs(series - np.exp(1j * x * u)).max() < 1e-8


def test_slot_stream_is_seeded_by_step_not_by_worker():
    from torch.utils.data import DataLoader

    from sigformer.data.ofdm import OFDMSlotStream

    stream = OFDMSlotStream(4, 4, seed=3, delay_spread_ns=100, doppler_hz=[100, 900])
    single = list(DataLoader(stream, batch_size=None, num_workers=0))
    workers = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(single) == len(stream) == 4
    for a, b in zip(single, workers):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    step2 = stream.batch(2)
    np.testing.assert_array_equal(torch.view_as_complex(single[2][0]).numpy(), step2.ls)
    assert set(step2.doppler_hz) <= {100, 900}
    stream.set_epoch(1)
    assert not np.allclose(stream.batch(2).channels, step2.channels)  # a new epoch, new slots
    assert not np.allclose(stream.fixed_set(4).channels, step2.channels)
    with pytest.raises(ValueError, match="snr_definition"):
        OFDMSlotStream(4, 4, snr_definition="loud")


# --- released recipe (issue 12) -------------------------------------------------------------

def test_release_recipe_is_adam_with_exponential_decay_per_epoch():
    from sigformer.recipes.ofdm import RELEASE_RECIPE, build_optimizer, fit_channel_estimator

    assert (RELEASE_RECIPE.lr, RELEASE_RECIPE.batch_size, RELEASE_RECIPE.max_epochs,
            RELEASE_RECIPE.early_stopping_patience) == (1e-3, 64, 10, 3)
    model = create_model("ofdm_linear")
    optimizer, scheduler = build_optimizer(model, RELEASE_RECIPE)
    assert type(optimizer) is torch.optim.Adam
    assert isinstance(scheduler, torch.optim.lr_scheduler.ExponentialLR)
    assert scheduler.gamma == 0.995
    data = simulate_ofdm(40, seed=0)
    from dataclasses import replace

    hist = fit_channel_estimator(model, data, recipe=replace(RELEASE_RECIPE, max_epochs=3,
                                                             batch_size=16))
    np.testing.assert_allclose(hist.series("lr"), [1e-3, 1e-3 * 0.995, 1e-3 * 0.995 ** 2])
    assert len(hist.series("val_loss")) == 3  # 10% held out for validation
    with pytest.raises(ValueError, match="lr_decay"):
        replace(RELEASE_RECIPE, lr_decay=1.5)


def test_early_stopping_fires_and_restores_the_best_epoch(monkeypatch, tmp_path):
    import sigformer.recipes.ofdm as recipe_module

    scripted = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.2, 0.1])  # best at epoch 1, then 3 worse
    snapshots = []

    def fake_validation(model, data, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_loss": next(scripted), "val_nmse_db": 0.0}

    monkeypatch.setattr(recipe_module, "evaluate_loss", fake_validation)
    model = create_model("ofdm_linear")
    data = simulate_ofdm(48, seed=1)
    recipe = recipe_module.OFDMRecipe(max_epochs=7, batch_size=16, lr=1e-2)
    hist = recipe_module.fit_channel_estimator(model, data, recipe=recipe,
                                               checkpoint_dir=tmp_path)
    assert len(hist.epochs) == 5 and hist.stopped_early and hist.best_epoch == 1
    for key, value in model.state_dict().items():  # weights of epoch 1 restored
        torch.testing.assert_close(value, snapshots[1][key], rtol=0, atol=0)
    best, cfg = load_checkpoint(tmp_path / "best")
    assert cfg["extra"]["epoch"] == 1
    torch.testing.assert_close(best.upsampler.weight, model.upsampler.weight)
    no_stop = recipe_module.OFDMRecipe(max_epochs=3, batch_size=16,
                                       early_stopping_patience=None, restore_best=False)
    hist = recipe_module.fit_channel_estimator(create_model("ofdm_linear"), data,
                                               recipe=no_stop)
    assert len(hist.epochs) == 3 and "val_loss" not in hist.epochs[0]  # no split needed


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    from sigformer.recipes.ofdm import OFDMRecipe, fit_channel_estimator

    data = simulate_ofdm(20, seed=2)
    recipe = OFDMRecipe(max_epochs=3, batch_size=6, lr=5e-3)
    torch.manual_seed(0)
    straight = create_model("fortitran", "tiny")
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    full = fit_channel_estimator(straight, data, recipe=recipe, seed=4)
    interrupted = create_model("fortitran", "tiny")
    interrupted.load_state_dict(initial)
    from dataclasses import replace

    fit_channel_estimator(interrupted, data, recipe=replace(recipe, max_epochs=2), seed=4,
                          checkpoint_dir=tmp_path)
    resumed = create_model("fortitran", "tiny")  # fresh weights: all state comes from disk
    hist = fit_channel_estimator(resumed, data, recipe=recipe, seed=4, checkpoint_dir=tmp_path,
                                 resume=True)
    assert [r["epoch"] for r in hist.epochs] == [0, 1, 2]
    np.testing.assert_allclose(hist.series("train_loss"), full.series("train_loss"), rtol=1e-5)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "latest.json").read_text())["epoch"] == 3


def test_metrics_are_named_for_what_they_measure():
    from sigformer.recipes.ofdm import ErrorMeter, ofdm_loss

    h = torch.randn(8, 120, 14, dtype=torch.complex64) * 3
    meter = ErrorMeter()
    estimate = 0.5 * h
    meter.update(ofdm_loss(estimate, h), estimate, h)
    out = meter.summary("val")
    assert out["val_nmse_db"] == pytest.approx(20 * np.log10(0.5), abs=1e-4)  # -6.02 dB
    mse = float(((estimate - h).abs() ** 2).mean())
    assert out["val_mse_db"] == pytest.approx(10 * np.log10(mse), abs=1e-4)
    assert out["val_mse_db"] == pytest.approx(10 * np.log10(2 * out["val_loss"]), abs=1e-4)
    assert out["val_mse_db"] - out["val_nmse_db"] == pytest.approx(10 * np.log10(9), abs=0.2)


# --- attention init switch and bf16 -------------------------------------------------------

def test_attention_init_switch_follows_multihead_attention():
    from sigformer.nn.blocks import MultiHeadAttention

    torch.manual_seed(0)
    release = create_model("adafortitran", "small")  # 2 layers, d_model 64
    torch.manual_seed(0)
    default = create_model("adafortitran", "small", attention_init="default")
    d = 64
    bound = np.sqrt(6 / (d + 3 * d))  # Xavier over the packed (3d, d) in_proj weight
    attns = [m for m in release.modules() if isinstance(m, MultiHeadAttention)]
    assert len(attns) == 2
    for attn in attns:
        for proj in (attn.query, attn.key, attn.value):
            assert proj.weight.abs().max() <= bound
            assert proj.weight.std().item() == pytest.approx(bound / np.sqrt(3), rel=0.05)
            assert proj.bias.abs().max() == 0
        assert attn.out.bias.abs().max() == 0
    blocks = release.encoder.blocks  # nn.TransformerEncoder deep-copies one layer
    for key, value in blocks[0].state_dict().items():
        torch.testing.assert_close(blocks[1].state_dict()[key], value, rtol=0, atol=0)
    plain = default.encoder.blocks[0].attn
    assert plain.query.bias.abs().max() > 0
    assert plain.query.weight.abs().max() <= 1 / np.sqrt(d)  # nn.Linear's default bound
    assert not torch.equal(default.encoder.blocks[0].attn.query.weight,
                           default.encoder.blocks[1].attn.query.weight)
    assert sum(p.numel() for p in default.parameters()) == sum(
        p.numel() for p in release.parameters())
    with pytest.raises(ValueError, match="attention_init"):
        create_model("adafortitran", "tiny", attention_init="xavier")


@pytest.mark.parametrize("name, preset", [("adafortitran", "tiny"), ("fortitran", "tiny"),
                                          ("ofdm_linear", None)])
def test_forward_under_bf16_autocast(name, preset):
    torch.manual_seed(0)
    model = create_model(name, preset).eval()
    x = torch.randn(4, 40, 2, dtype=torch.complex64)
    stats = torch.tensor([[10.0, 100, 500]] * 4)
    reference = model(x, stats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, stats)
    assert out.dtype == torch.complex64 and out.shape == (4, 120, 14)
    assert ((out - reference).abs().norm() / reference.abs().norm()) < 0.05


# --- fair sample LMMSE (issue 14) ---------------------------------------------------------

def test_sample_lmmse_accumulates_in_chunks_and_counts_its_slots():
    from sigformer.rf.channel_estimation import (
        fair_sample_lmmse_slots,
        fit_sample_lmmse_on_mixture,
    )

    assert fair_sample_lmmse_slots(OFDMConfig()) == 64_000  # 10 x 80^2
    data = simulate_ofdm(300, seed=4)
    whole = SampleLMMSE().fit(data)
    parts = SampleLMMSE().partial_fit(data.subset(slice(0, 120))).partial_fit(
        data.subset(slice(120, 300)))
    np.testing.assert_allclose(parts.filter_, whole.filter_, rtol=1e-4, atol=1e-6)
    assert parts.n_fitted_ == 300
    cfg = OFDMConfig(pilot_subcarrier_step=40)  # 3 x 2 pilots: 360 slots are fair
    mixed = fit_sample_lmmse_on_mixture(fair_sample_lmmse_slots(cfg), config=cfg, chunk=100)
    assert mixed.n_fitted_ == 360
    with pytest.raises(ValueError, match="not fitted"):
        SampleLMMSE().predict(data)


# --- the long-training script -----------------------------------------------------------------

def test_train_script_smoke_and_resume(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_ofdm.py"
    spec = importlib.util.spec_from_file_location("train_ofdm", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--model", "linear", "--n-train", "64", "--batch-size", "32", "--epochs", "1",
            "--out", str(tmp_path), "--log-every", "0"]
    assert script.main(args) == 0
    assert (tmp_path / "data" / "train.npz").is_file()
    args[args.index("--epochs") + 1] = "2"
    assert script.main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "ETA" in out and "resumed after epoch 1" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [0, 1]
    model, cfg = load_checkpoint(tmp_path / "best")
    assert cfg["extra"]["n_train"] == 64 and cfg["model"] == "ofdm_linear"


def test_training_on_the_fly_from_a_slot_stream():
    from sigformer.data.ofdm import OFDMSlotStream
    from sigformer.recipes.ofdm import OFDMRecipe, fit_channel_estimator

    stream = OFDMSlotStream(8, 4, seed=1)
    model = create_model("ofdm_linear")
    hist = fit_channel_estimator(model, stream, recipe=OFDMRecipe(max_epochs=2, batch_size=8,
                                                                  lr=1e-2))
    assert len(hist.epochs) == 2 and hist.epochs[1]["train_loss"] < hist.epochs[0]["train_loss"]
    assert "val_nmse_db" in hist.epochs[0]  # 10% of an epoch's slots, independent seed
    with pytest.raises(ValueError, match="batches of 8 slots"):
        fit_channel_estimator(model, stream, recipe=OFDMRecipe(batch_size=16))


# --- resume safety (review 8): recipe and seed checks, data records, progress line -----------

def _train_script():
    from repo_scripts import load_script

    return load_script("scripts/train_ofdm.py")


def _latest_trainer_json(out: Path) -> Path:
    return out / json.loads((out / "latest.json").read_text())["folder"] / "trainer.json"


def test_resume_refuses_a_changed_recipe_or_seed_and_allows_more_epochs(tmp_path):
    from dataclasses import replace

    from sigformer.checkpoint import CheckpointError
    from sigformer.recipes.ofdm import OFDMRecipe, fit_channel_estimator

    data = simulate_ofdm(24, seed=2)
    recipe = OFDMRecipe(max_epochs=1, batch_size=8, lr=1e-3)
    fit_channel_estimator(create_model("ofdm_linear"), data, recipe=recipe, seed=4,
                          checkpoint_dir=tmp_path)
    longer = replace(recipe, max_epochs=2)
    with pytest.raises(CheckpointError, match=r"lr 0\.001 -> 0\.01\. .*new checkpoint folder"
                       ) as refused:
        fit_channel_estimator(create_model("ofdm_linear"), data, recipe=replace(longer, lr=1e-2),
                              seed=4, checkpoint_dir=tmp_path, resume=True)
    assert "max_epochs 1" not in str(refused.value)  # only the changed field is listed
    with pytest.raises(CheckpointError, match=r"grad_clip None -> 1\.0, bf16 False -> True"):
        fit_channel_estimator(create_model("ofdm_linear"), data,
                              recipe=replace(longer, bf16=True, grad_clip=1.0), seed=4,
                              checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="seed 4 -> 5"):
        fit_channel_estimator(create_model("ofdm_linear"), data, recipe=longer, seed=5,
                              checkpoint_dir=tmp_path, resume=True)
    hist = fit_channel_estimator(create_model("ofdm_linear"), data, recipe=longer, seed=4,
                                 checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_allclose(hist.series("lr"), [1e-3, 1e-3 * 0.995])  # the run went on
    assert json.loads(_latest_trainer_json(tmp_path).read_text())["seed"] == 4


def test_seed_none_is_drawn_once_and_the_validation_split_kept_on_resume(tmp_path,
                                                                       monkeypatch):
    from dataclasses import replace

    import sigformer.recipes.ofdm as recipe_module
    from sigformer.checkpoint import CheckpointError

    held_out = []
    split = recipe_module.split_validation

    def spy(train, fraction, seed):
        kept, val = split(train, fraction, seed)
        held_out.append(val.channels.copy())
        return kept, val

    monkeypatch.setattr(recipe_module, "split_validation", spy)
    data = simulate_ofdm(40, seed=2)
    recipe = recipe_module.OFDMRecipe(max_epochs=1, batch_size=8, val_fraction=0.25)
    recipe_module.fit_channel_estimator(create_model("ofdm_linear"), data, recipe=recipe,
                                        seed=None, checkpoint_dir=tmp_path)
    stored = json.loads(_latest_trainer_json(tmp_path).read_text())["seed"]
    assert isinstance(stored, int)
    recipe_module.fit_channel_estimator(create_model("ofdm_linear"), data,
                                        recipe=replace(recipe, max_epochs=2), seed=None,
                                        checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(held_out[1], held_out[0])  # no training slot in validation
    assert json.loads(_latest_trainer_json(tmp_path).read_text())["seed"] == stored
    # a checkpoint from before seeds were stored cannot rebuild a seed=None split
    trainer = _latest_trainer_json(tmp_path)
    meta = json.loads(trainer.read_text())
    del meta["seed"]
    trainer.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="predates stored seeds"):
        recipe_module.fit_channel_estimator(create_model("ofdm_linear"), data,
                                            recipe=replace(recipe, max_epochs=3), seed=None,
                                            checkpoint_dir=tmp_path, resume=True)


def test_train_script_resumes_a_checkpoint_in_the_format_before_seeds_and_records(tmp_path,
                                                                                  capsys):
    """What runs trained before this change hold: the recipe in trainer.json but no seed,
    and cached data without a record beside it. They must resume (records get written)."""
    script = _train_script()
    args = ["--model", "linear", "--n-train", "64", "--batch-size", "32", "--epochs", "1",
            "--out", str(tmp_path), "--log-every", "0"]
    assert script.main(args) == 0
    trainer = _latest_trainer_json(tmp_path)
    meta = json.loads(trainer.read_text())
    assert meta["recipe"]["lr"] == 1e-3 and meta.pop("seed") == 0
    trainer.write_text(json.dumps(meta, indent=2))
    for record in (tmp_path / "data").glob("*.json"):
        record.unlink()
    args[args.index("--epochs") + 1] = "2"  # extending the run is allowed
    assert script.main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch 1" in out and "has no data record" in out
    record = json.loads((tmp_path / "data" / "train.json").read_text())
    assert record["seed"] == [0, 1] and record["profile"] == "A"
    assert record["adopted_without_record"]
    assert json.loads(_latest_trainer_json(tmp_path).read_text())["epoch"] == 2
    with pytest.raises(SystemExit, match=r"lr 0\.001 -> 0\.002"):
        script.main(args + ["--resume", "--lr", "2e-3"])


def test_train_script_refuses_cached_data_simulated_with_other_settings(tmp_path):
    script = _train_script()
    args = ["--model", "linear", "--n-train", "64", "--batch-size", "32", "--epochs", "1",
            "--out", str(tmp_path), "--log-every", "0"]
    assert script.main(args) == 0
    record = json.loads((tmp_path / "data" / "train.json").read_text())
    assert record["seed"] == [0, 1] and record["doppler_hz"] == script.DRAWS["doppler_hz"]
    with pytest.raises(SystemExit, match=r"seed \[0, 1\] -> \[3, 1\].*new --out"):
        script.main(args + ["--seed", "3"])
    with pytest.raises(SystemExit, match="profile 'A' -> 'C'"):
        script.main(args + ["--profile", "C", "--resume"])


def test_stream_validation_set_is_drawn_from_no_training_batch(tmp_path):
    script = _train_script()
    args = script.parse_args(["--data", "stream", "--model", "linear", "--n-train", "32",
                              "--batch-size", "8", "--n-val", "8", "--out", str(tmp_path)])
    train, val = script.build_data(args, tmp_path)
    assert json.loads((tmp_path / "data" / "val.json").read_text())["seed"] == [0, 2**31 - 1]
    np.testing.assert_array_equal(val.channels, train.fixed_set(8).channels)
    # the former seed (0, 2) is batch 0 of epoch 2 (SeedSequence ignores trailing zeros)
    former = simulate_ofdm(8, seed=np.random.SeedSequence([0, 2]), **script.DRAWS,
                           profile="A")
    np.testing.assert_array_equal(former.channels, train.batch(0, epoch=2).channels)
    for epoch in range(3):
        for step in range(len(train)):
            assert not np.array_equal(val.channels, train.batch(step, epoch=epoch).channels)


def test_progress_line_shows_the_running_mean_loss_of_the_epoch(monkeypatch):
    import re

    import sigformer.recipes.ofdm as recipe_module

    losses, lines = [], []
    loss_fn = recipe_module.ofdm_loss

    def recording(estimate, truth):
        loss = loss_fn(estimate, truth)
        losses.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(recipe_module, "ofdm_loss", recording)
    recipe = recipe_module.OFDMRecipe(max_epochs=1, batch_size=8, lr=1e-2,
                                      early_stopping_patience=None, restore_best=False)
    recipe_module.fit_channel_estimator(create_model("ofdm_linear"), simulate_ofdm(40, seed=3),
                                        recipe=recipe, log=lines.append, log_every_s=0)
    shown = [float(m.group(1)) for line in lines
             if (m := re.search(r"step \d+/5 .*mean loss (\S+) \|", line))]
    assert len(shown) == 5 and len(losses) == 5  # equal batches: the mean is a plain mean
    for step, value in enumerate(shown, 1):
        assert value == pytest.approx(np.mean(losses[:step]), rel=1e-3)
    assert shown[-1] != pytest.approx(losses[-1], rel=1e-3)  # not the last batch's loss


def test_slot_stream_starting_at_a_step_yields_the_rest_of_the_epoch():
    from sigformer.data.ofdm import OFDMSlotStream

    stream = OFDMSlotStream(batch_size=2, steps_per_epoch=4, seed=3)
    stream.set_epoch(1)
    whole = list(stream)
    rest = list(stream.starting_at(2))
    assert len(rest) == 2
    for a, b in zip(whole[2:], rest):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert list(stream.starting_at(4)) == []
    with pytest.raises(ValueError, match="first_step must be within 0..4"):
        stream.starting_at(5)


def test_nmse_refuses_shapes_that_would_broadcast_and_undefined_inputs():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((4, 12, 14)) + 1j * rng.standard_normal((4, 12, 14))
    est = truth + 0.1 * rng.standard_normal(truth.shape)
    assert nmse_db(est, truth) < -15
    assert nmse_db(torch.as_tensor(est), torch.as_tensor(truth)) == pytest.approx(
        nmse_db(est, truth))
    with pytest.raises(ValueError, match="must have the same shape"):
        nmse_db(est[:, None], truth)  # (n, 1, K, L) against (n, K, L) broadcast silently
    with pytest.raises(ValueError, match="must have the same shape"):
        nmse_db(est[0], truth)
    with pytest.raises(ValueError, match="all zeros"):
        nmse_db(est, np.zeros_like(truth))
    bad = est.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="estimate holds NaN"):
        nmse_db(bad, truth)
