"""Shared inputs for the bad-input catalogue: tiny bundles built once per session (random
weights, no training), a fitted estimator, and writers of small generated files."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.edf_files import write_edf

sys.path.insert(0, str(Path(__file__).parent))  # the case type (badinput.py)

EEG_NAMES = ["Fp1", "C3", "Cz", "C4", "P3", "P4"]




@dataclass
class Shared:
    """Session-wide, read-only inputs (copy a bundle before damaging it)."""

    root: Path

    def _cached(self, name, build):
        if not hasattr(self, "_cache"):
            self._cache = {}
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def eeg_bundle(self) -> Path:
        return self._cached("eeg", lambda: _eeg_bundle().save(self.root / "eeg_bundle"))

    @property
    def iq_bundle(self) -> Path:
        return self._cached("iq", lambda: _iq_bundle().save(self.root / "iq_bundle"))

    @property
    def sep_bundle(self) -> Path:
        return self._cached("sep", lambda: _sep_bundle().save(self.root / "sep_bundle"))

    @property
    def fitted(self):
        return self._cached("fitted", _fitted_classifier)


def _eeg_bundle(chain=(), sfreq: float = 100.0):
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    spec = SignalSpec.eeg(sfreq, EEG_NAMES, window=int(sfreq))
    model = create_model("dbconformer", spec=spec, n_outputs=2, emb_size=8, num_heads=2,
                         depth=1, spa_dim=4, patch_size=20, kernel_size=15).eval()
    return Bundle(model=model, task="classify", input_spec=spec, chain=list(chain),
                  model_spec=spec, input_scale=1e6, labels=["left", "right"])


def _iq_bundle():
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    spec = SignalSpec.iq(1e6, 128)
    return Bundle(model=create_model("kd_cnn", n_outputs=3).eval(), task="classify",
                  input_spec=spec, model_spec=spec, labels=["ASK", "FSK", "PSK"],
                  extra={"normalization": "rms"})


def _sep_bundle():
    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.spec import SignalSpec

    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", n_src=2, sample_rate=8000).eval()
    spec = SignalSpec.audio(8000, 1)
    return Bundle(model=model, task="separate", input_spec=spec, model_spec=spec,
                  labels=["s1", "s2"], extra={"chunk_s": 0.5, "overlap_s": 0.1})


def _fitted_classifier():
    from sigformer.data import simulate_motor_imagery
    from sigformer.estimators import SignalClassifier

    rec = simulate_motor_imagery(20, sfreq=100.0, trial_duration=1.0, seed=3,
                                 channels=["C3", "Cz", "C4", "P3"])
    epochs = rec.epochs({"left_hand": 0, "right_hand": 1}, 0.0, 1.0)
    epochs.data, epochs.unit = epochs.data * 1e6, "uV"
    clf = SignalClassifier(max_epochs=1, batch_size=16,
                           model_params=dict(emb_size=8, num_heads=2, depth=1, spa_dim=4,
                                             patch_size=20, kernel_size=15))
    return clf.fit(epochs), epochs


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("bad_input_shared"))


@dataclass
class Ctx:
    """What a case gets: a fresh folder, a seeded generator and the shared inputs."""

    tmp: Path
    rng: np.random.Generator
    shared: Shared

    def copy_bundle(self, which: str = "eeg_bundle") -> Path:
        target = self.tmp / which
        shutil.copytree(getattr(self.shared, which), target)
        return target

    def edf(self, name: str = "rec.edf", n_ch: int = 3, seconds: int = 10, **kwargs) -> Path:
        digital = (self.rng.standard_normal((n_ch, 100 * seconds)) * 800).astype(np.int16)
        labels = kwargs.pop("labels", ["C3", "Cz", "C4", "P3", "P4", "Pz"][:n_ch])
        return write_edf(self.tmp / name, kwargs.pop("digital", digital), labels, **kwargs)

    def sigmf(self, name: str = "cap", samples=None, **kwargs) -> Path:
        from sigformer.data.sigmf_io import write_sigmf

        if samples is None:
            samples = (self.rng.standard_normal(1024)
                       + 1j * self.rng.standard_normal(1024)).astype(np.complex64)
        return write_sigmf(self.tmp / name, samples, sample_rate=1e6, **kwargs)

    def wav(self, name: str = "a.wav", channels: int = 1, seconds: float = 0.5,
            rate: int = 8000, subtype: str = "FLOAT") -> Path:
        import soundfile as sf

        audio = 0.1 * self.rng.standard_normal((int(rate * seconds), channels))
        sf.write(str(self.tmp / name), audio, rate, subtype=subtype)
        return self.tmp / name


@pytest.fixture()
def ctx(tmp_path, shared) -> Ctx:
    return Ctx(tmp_path, np.random.default_rng(0), shared)
