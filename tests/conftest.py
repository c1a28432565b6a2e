"""Shared fixtures: real recordings in ../shared/data (skipped when absent), small datasets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SIGFORMER_SHARED_DATA", REPO.parent / "shared" / "data"))
EEGMMIDB = SHARED_DATA / "eeg_mi" / "eegmmidb"

warnings.filterwarnings("ignore", message="Montage name 'standard_1020' is deprecated")

# Every LSL stream in the tests stays on this machine: loopback-only config, per-run session.
from sigformer.streaming.lsl import use_loopback_config  # noqa: E402

use_loopback_config(force=True)


@pytest.fixture(scope="session")
def eegmmidb_dir() -> Path:
    if not (EEGMMIDB / "S001R04.edf").is_file():
        pytest.skip(f"real eegmmidb recordings not found in {EEGMMIDB} (../shared/data is "
                    "only present in the project's CI and dev machines)")
    return EEGMMIDB


@pytest.fixture(scope="session")
def mi_epochs():
    """Small simulated left/right motor-imagery epochs (8-30 Hz), microvolts."""
    from sigformer.data import simulate_motor_imagery
    from sigformer.stages import BandPass

    rec = simulate_motor_imagery(60, sfreq=100.0, trial_duration=2.0, snr_db=0.0, erd=0.7,
                                 seed=3)
    rec = BandPass(8, 30, phase="zero").transform(rec)
    ep = rec.epochs({"left_hand": 0, "right_hand": 1}, 0.0, 2.0)
    ep.data, ep.unit = ep.data * 1e6, "uV"
    return ep


@pytest.fixture()
def tiny_dbconformer_params() -> dict:
    # A CPU-friendly DBConformer for 2 s at 100 Hz (the reference preset is tested separately).
    return dict(emb_size=16, num_heads=4, depth=1, spa_dim=8, patch_size=25)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture()
def isolated_mne_home(tmp_path, monkeypatch):
    """MOABB/MNE write config and caches under HOME/MNE_DATA: keep them in tmp."""
    home = tmp_path / "home"
    (home / ".mne").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne_data"))
    (tmp_path / "mne_data").mkdir()
    return tmp_path


@pytest.fixture()
def one_thread():
    """One intra-op thread for the test (exports, A/B equality checks): avoids oversubscribing
    shared CI cores; restores the previous count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_ofdm_inputs(n: int, pilot_shape: tuple[int, int], seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    pilots = torch.complex(torch.randn(n, *pilot_shape, generator=g),
                           torch.randn(n, *pilot_shape, generator=g))
    # inside the trained range: SNR 0-25 dB, delay spread 25-300 ns, Doppler 50-1000 Hz
    stats = torch.rand(n, 3, generator=g) * torch.tensor([25.0, 275.0, 950.0])
    return pilots, stats + torch.tensor([0.0, 25.0, 50.0])


@pytest.fixture()
def ofdm_inputs():
    """``make(n, pilot_shape, seed=0) -> (complex pilots, [SNR, delay spread, Doppler])``."""
    return _random_ofdm_inputs


# --- tiny untrained bundles shared by the stream / CLI tests ----------------------------------

@pytest.fixture(scope="module")
def separation_bundle(tmp_path_factory) -> Path:
    """A tiny two-speaker MossFormer bundle at 8 kHz (untrained: for plumbing, not quality)."""
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", n_src=2, sample_rate=8000).eval()
    spec = SignalSpec.audio(8000, 1)
    return Bundle(model=model, task="separate", input_spec=spec, model_spec=spec,
                  labels=["s1", "s2"], extra={"chunk_s": 0.5, "overlap_s": 0.1}
                  ).save(tmp_path_factory.mktemp("sep") / "bundle")


@pytest.fixture(scope="module")
def enhancement_bundle(tmp_path_factory) -> Path:
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    model = create_model("deftan2", "tiny", n_mics=4, sample_rate=8000).eval()
    spec = SignalSpec.audio(8000, 4)
    return Bundle(model=model, task="enhance", input_spec=spec, model_spec=spec,
                  extra={"chunk_s": 0.5, "overlap_s": 0.1}
                  ).save(tmp_path_factory.mktemp("enh") / "bundle")


@pytest.fixture(scope="module")
def family_bundle(tmp_path_factory) -> Path:
    """A tiny rate-agnostic IQ family bundle (KD-CNN, ASK / FSK, 8 samples per symbol)."""
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    spec = SignalSpec.iq(1.0, 128)
    return Bundle(model=create_model("kd_cnn", n_outputs=2).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=["ASK", "FSK"],
                  extra={"normalization": "rms", "rate_agnostic": True, "target_sps": 8.0}
                  ).save(tmp_path_factory.mktemp("fam") / "b")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HOME is a fresh folder and the working folder another one, so a path taken literally
    ("./~/...") lands in the working folder, not in ``home``."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


@pytest.fixture
def counted_amr_fits(monkeypatch) -> list[str]:
    """The labels ``sigformer.recipes.amr.fit_stream`` trains, in order (training still
    runs): resume tests check which models a run retrains."""
    import sigformer.recipes.amr as recipe_module

    trained: list[str] = []
    real_fit = recipe_module.fit_stream

    def counting_fit(model, stream, recipe, **kwargs):
        trained.append(kwargs["label"])
        return real_fit(model, stream, recipe, **kwargs)

    monkeypatch.setattr(recipe_module, "fit_stream", counting_fit)
    return trained


@pytest.fixture(scope="module")
def iq_bundle(tmp_path_factory) -> Path:
    """An untrained 3-class IQ classification bundle (KD-CNN, 128-sample frames, rms
    scaling) for tests of the IQ paths (SigMF writing, streaming); modules may override."""
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    spec = SignalSpec.iq(1e6, 128)
    return Bundle(model=create_model("kd_cnn", n_outputs=3).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=["ASK", "FSK", "PSK"],
                  extra={"normalization": "rms"}).save(tmp_path_factory.mktemp("iq") / "b")
