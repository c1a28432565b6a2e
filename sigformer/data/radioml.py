"""RadioML-style modulation data: generators, and loaders for DeepSig and foreign files.

Generators:

* :func:`generate_radioml` - RML2016.10a's layout (``n_per_condition`` frames per class and
  SNR). ``generator="modgen"`` (default) draws every frame from the realistic generator of
  :mod:`sigformer.data.modgen` (random samples per symbol, pulses, timing, CFO, phase noise,
  multipath with Doppler, IQ imbalance, DC offset; every parameter recorded in
  ``AMRDataset.params``). ``generator="legacy"`` is sigformer's earlier generator, kept
  unchanged so earlier results stay reproducible (described below).
* :func:`generate_amr` - any number of frames with SNRs drawn over a range (training sets,
  on-the-fly streams), modulation classes or families (``FAMILY_CLASSES``).

The ``legacy`` generator, after ``generate_RML2016.10a.py`` and ``transmitters.py`` of
radioML/dataset:

* 11 classes: 8 digital (BPSK, QPSK, 8PSK, PAM4, QAM16, QAM64 with root-raised-cosine pulses,
  roll-off 0.35, 8 samples per symbol; GFSK with sensitivity 0.1 and BT 0.35; CPFSK with
  modulation index 0.5) and 3 analog (WBFM with 75 kHz deviation at 200 kHz, AM-DSB with
  carrier, AM-SSB upper sideband). The reference modulates Shakespeare text and a podcast;
  here the bits are random and the audio is band-limited noise with a syllable-rate envelope.
* Channel (``dynamic_channel_model`` of the reference, at 200 kHz): sampling-clock offset up
  to 50 Hz, carrier-frequency offset up to 500 Hz, 3-tap multipath at delays 0 / 0.9 / 1.7
  samples with magnitudes 1 / 0.8 / 0.3, Rician K = 4 per tap (fD = 1 Hz, i.e. static over a
  frame), and AWGN.
* Frames: 128 samples taken at a random offset 50..500 samples into the burst and divided by
  ``sum |x|`` (the reference's L1 "energy" normalisation); stored ``(n, 2, 128)`` I/Q rows.

SNR (both generators): ``snr_convention="true"`` (default) sets the noise power to
``10**(-SNR/10)`` times the unit signal power. ``"rml2016"`` uses the reference's noise
amplitude ``10**(-SNR/10)`` (power ``10**(-SNR/5)``), so its labels are half the true SNR in dB.

Loaders: :func:`load_rml2016` (a Python pickle: only with ``allow_pickle=True``),
:func:`load_rml2018` (HDF5, ``GOLD_XYZ_OSC.0001_1024.hdf5``), :meth:`AMRDataset.load`
(sigformer's npz, or foreign npz / HDF5 files with named arrays: ``x_key``, ``y_key``, ...).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from .io import DataError, load_npz, save_npz
from .modgen import FAMILY_CLASSES as FAMILY_CLASSES  # re-exported
from .modgen import ModGenConfig, condition_grid, constellation, generate_frames
from .sigmf_io import normalize_frames

RML2016_CLASSES = ("8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK", "PAM4", "QAM16",
                   "QAM64", "QPSK", "WBFM")
# True one-hot order of RML2018.01A (the shipped classes.txt lists another order)
RML2018_CLASSES = ("OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK",
                   "32APSK", "64APSK", "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM",
                   "AM-SSB-WC", "AM-SSB-SC", "AM-DSB-WC", "AM-DSB-SC", "FM", "GMSK", "OQPSK")
RML2016_SNRS = tuple(range(-20, 20, 2))
SAMPLE_RATE = 200e3
SPS = 8
GENERATORS = ("modgen", "legacy")
PICKLE_REFUSAL = (
    "{path} is a Python pickle (the RML2016 distribution format). Loading a pickle can run "
    "arbitrary code, so sigformer does not do it by default: pass allow_pickle=True to "
    "load_rml2016 (pipeline YAML: amr.allow_pickle: true) only for a file from a source you "
    "trust, then convert it once to .npz with AMRDataset.save and use that (amr.source: npz)")
PARAM_PREFIX = "param_"


@dataclass
class AMRDataset:
    """Modulation-recognition frames: ``X (n, 2, L)`` float32 I/Q, integer labels ``y``
    indexing ``classes``, the SNR (dB) of each frame and, for generated frames, every drawn
    parameter (``params[name]``, one value per frame, NaN where it does not apply)."""

    X: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    classes: tuple[str, ...] = RML2016_CLASSES
    info: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float32)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.snr = np.asarray(self.snr, dtype=np.float32)
        self.classes = tuple(self.classes)
        self.params = {k: np.asarray(v) for k, v in self.params.items()}
        if self.X.ndim != 3 or self.X.shape[1] != 2:
            raise DataError(f"frames must be (n, 2, length) I/Q rows, got {self.X.shape}")
        if not (len(self.X) == len(self.y) == len(self.snr)):
            raise DataError(f"{len(self.X)} frames, {len(self.y)} labels and {len(self.snr)} "
                            f"SNRs must match")
        wrong = [k for k, v in self.params.items() if v.shape[:1] != (len(self.X),)]
        if wrong:
            raise DataError(f"params {wrong} must hold one value per frame ({len(self.X)})")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise DataError(f"labels must index the {len(self.classes)} classes")
        if not np.isfinite(self.X).all():
            raise DataError("frames contain NaN or Inf values")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def frame_length(self) -> int:
        return self.X.shape[-1]

    def subset(self, index) -> AMRDataset:
        return AMRDataset(self.X[index], self.y[index], self.snr[index], self.classes,
                          dict(self.info), {k: v[index] for k, v in self.params.items()})

    def split(self, test_size: float = 0.3, seed: int = 0) -> tuple[AMRDataset, AMRDataset]:
        """Stratified by (class, SNR) so every condition appears in both parts (by class
        alone, then not at all, when there are too few frames per condition)."""
        from sklearn.model_selection import train_test_split

        index = np.arange(len(self))
        snr = np.nan_to_num(self.snr, posinf=999, neginf=-999)
        for strata in (self.y * 10000 + np.round(snr).astype(int) + 5000, self.y, None):
            try:
                idx_train, idx_test = train_test_split(index, test_size=test_size,
                                                       random_state=seed, stratify=strata)
                break
            except ValueError:
                continue
        return self.subset(idx_train), self.subset(idx_test)

    def save(self, path: str | Path) -> Path:
        arrays = {"X": self.X, "y": self.y, "snr": self.snr}
        arrays.update({PARAM_PREFIX + k: v for k, v in self.params.items()})
        return save_npz(path, arrays, {"classes": list(self.classes), "info": self.info})

    @classmethod
    def load(cls, path: str | Path, *, x_key: str | None = None, y_key: str | None = None,
             snr_key: str | None = None, classes: list[str] | None = None,
             classes_key: str | None = None, layout: str = "auto") -> AMRDataset:
        """Read sigformer's npz (what :meth:`save` wrote), or - with ``x_key`` - a foreign
        ``.npz`` / HDF5 (``.h5``/``.hdf5``) file with named arrays: frames under ``x_key``
        (``(n, 2, L)``, ``(n, L, 2)`` or complex ``(n, L)``; ``layout`` ``"auto"``,
        ``"channels_first"`` or ``"channels_last"``), labels under ``y_key`` (integers,
        one-hot rows or strings), optional SNRs under ``snr_key`` and class names given as
        ``classes`` or stored under ``classes_key``."""
        if x_key is None:
            arrays, meta = load_npz(path, {"X", "y", "snr"}, "modulation dataset")
            params = {k[len(PARAM_PREFIX):]: v for k, v in arrays.items()
                      if k.startswith(PARAM_PREFIX)}
            return cls(arrays["X"], arrays["y"], arrays["snr"], meta["classes"],
                       meta["info"], params)
        return load_named_arrays(path, x_key=x_key, y_key=y_key, snr_key=snr_key,
                                 classes=classes, classes_key=classes_key, layout=layout)


def _read_named(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (None skipped) of an npz or HDF5 file, with errors naming them."""
    wanted = [k for k in keys if k is not None]
    if not path.is_file():
        raise DataError(f"modulation data file {path} does not exist")
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                available = []
                f.visit(available.append)
                missing = [k for k in wanted if k not in f]
                if missing:
                    raise DataError(f"{path} has no datasets {missing}; it holds {available}")
                return {k: np.asarray(f[k][()]) for k in wanted}
        except DataError:
            raise
        except OSError as err:
            raise DataError(f"{path} is not a readable HDF5 file: {err}") from None
    if not zipfile.is_zipfile(path):  # else np.load reads any other bytes as a pickle
        raise DataError(f"{path} is not a readable .npz file: it is not a zip archive "
                        f"(truncated, or another file renamed?)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in wanted if k not in z.files]
            if missing:
                raise DataError(f"{path} has no arrays {missing}; it holds {z.files}")
            return {k: z[k] for k in wanted}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} is not a readable .npz file (object arrays are refused: "
                        f"no pickle): {err}") from None


def _frames_from_array(x: np.ndarray, layout: str, path: Path, key: str) -> np.ndarray:
    if np.iscomplexobj(x):
        if x.ndim != 2:
            raise DataError(f"{path}: complex {key!r} must be (n, length), got {x.shape}")
        return np.stack([x.real, x.imag], axis=1)
    if x.ndim != 3 or 2 not in (x.shape[1], x.shape[2]):
        raise DataError(f"{path}: {key!r} has shape {x.shape}; expected (n, 2, length), "
                        f"(n, length, 2) or complex (n, length)")
    if layout == "auto":
        layout = "channels_first" if x.shape[1] == 2 else "channels_last"
    if layout not in ("channels_first", "channels_last"):
        raise ValueError(f"layout must be 'auto', 'channels_first' or 'channels_last', got "
                         f"{layout!r}")
    if layout == "channels_last":
        x = x.transpose(0, 2, 1)
    if x.shape[1] != 2:
        raise DataError(f"{path}: {key!r} with layout {layout} has {x.shape[1]} rows, not 2")
    return x


def load_named_arrays(path: str | Path, *, x_key: str, y_key: str | None,
                      snr_key: str | None = None, classes: list[str] | None = None,
                      classes_key: str | None = None, layout: str = "auto") -> AMRDataset:
    """A foreign npz / HDF5 modulation dataset (see :meth:`AMRDataset.load`)."""
    path = Path(path)
    if y_key is None:
        raise ValueError("a foreign file needs y_key (the name of its label array)")
    arrays = _read_named(path, [x_key, y_key, snr_key, classes_key])
    X = _frames_from_array(arrays[x_key], layout, path, x_key)
    y = arrays[y_key]
    if classes is None and classes_key is not None:
        classes = [c.decode() if isinstance(c, bytes) else str(c)
                   for c in np.asarray(arrays[classes_key]).ravel()]
    if y.ndim == 2 and y.shape[0] == len(X) and y.shape[1] > 1:  # one-hot rows
        y = y.argmax(axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.dtype.kind in "SUO":
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in y]
        classes = list(classes) if classes is not None else sorted(set(names))
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{path}: labels {unknown} are not in the classes {classes}")
        y = np.array([classes.index(v) for v in names])
    elif classes is None:
        classes = [str(i) for i in range(int(y.max()) + 1)] if len(y) else []
    if len(y) != len(X):
        raise DataError(f"{path}: {len(X)} frames under {x_key!r} but {len(y)} labels under "
                        f"{y_key!r}")
    snr = (np.asarray(arrays[snr_key], float).reshape(len(X)) if snr_key is not None
           else np.full(len(X), np.nan))
    return AMRDataset(X, y, snr, tuple(classes), {"source": str(path), "x_key": x_key,
                                                  "y_key": y_key})


# --- transmitters -----------------------------------------------------------------------

def rrc_taps(sps: int = SPS, beta: float = 0.35, span: int = 11) -> np.ndarray:
    """Root-raised-cosine taps (unit energy), ``span`` symbols long."""
    t = np.arange(-span * sps // 2, span * sps // 2 + 1) / sps
    taps = np.empty_like(t)
    for i, ti in enumerate(t):
        if abs(ti) < 1e-9:
            taps[i] = 1 + beta * (4 / np.pi - 1)
        elif beta and abs(abs(4 * beta * ti) - 1) < 1e-9:
            taps[i] = beta / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                           + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
        else:
            taps[i] = (np.sin(np.pi * ti * (1 - beta)) + 4 * beta * ti * np.cos(
                np.pi * ti * (1 + beta))) / (np.pi * ti * (1 - (4 * beta * ti) ** 2))
    return taps / np.sqrt(np.sum(taps ** 2))


def _constellation(name: str) -> np.ndarray:
    """The legacy generator's constellations: the realistic generator's (unit mean power)."""
    return constellation(name)


def _linear_modulation(rng, name: str, n: int, length: int) -> np.ndarray:
    points = _constellation(name)
    n_sym = length // SPS + 12
    symbols = points[rng.integers(0, len(points), (n, n_sym))]
    up = np.zeros((n, n_sym * SPS), complex)
    up[:, ::SPS] = symbols
    x = signal.lfilter(rrc_taps(), 1.0, up, axis=1)
    return x[:, -length:]


def _gaussian_taps(bt: float, sps: int = SPS, span: int = 4) -> np.ndarray:
    t = np.arange(-span * sps // 2, span * sps // 2 + 1) / sps
    alpha = np.sqrt(np.log(2) / 2) / bt
    taps = np.sqrt(np.pi) / alpha * np.exp(-(np.pi * t / alpha) ** 2)
    return taps / taps.sum()


def _frequency_modulation(rng, name: str, n: int, length: int) -> np.ndarray:
    n_sym = length // SPS + 8
    nrz = np.repeat(rng.integers(0, 2, (n, n_sym)) * 2 - 1, SPS, axis=1).astype(float)
    if name == "GFSK":  # gfsk_mod(sps=8, sensitivity=0.1, bt=0.35)
        freq = signal.lfilter(_gaussian_taps(0.35), 1.0, nrz, axis=1) * 0.1
    else:  # cpfsk_bc(k=0.5): the phase moves k*pi per symbol
        freq = nrz * 0.5 * np.pi / SPS
    phase = np.cumsum(freq, axis=1) + rng.uniform(-np.pi, np.pi, (n, 1))
    return np.exp(1j * phase)[:, -length:]


def _audio(rng, n: int, length: int) -> np.ndarray:
    """Band-limited noise (2-8 kHz at 200 kHz) with a random slow envelope, peak 1."""
    out = np.empty((n, length))
    white = rng.standard_normal((n, length + 256))
    for i in range(n):
        cutoff = rng.uniform(2e3, 8e3) / (SAMPLE_RATE / 2)
        b, a = signal.butter(4, cutoff)
        x = signal.lfilter(b, a, white[i])[256:]
        env = 0.3 + 0.7 * np.abs(np.sin(np.pi * rng.uniform(0.5, 3) * np.arange(length)
                                         / length + rng.uniform(0, np.pi)))
        x = x * env
        out[i] = x / max(np.abs(x).max(), 1e-9)
    return out


def _analog_modulation(rng, name: str, n: int, length: int) -> np.ndarray:
    audio = _audio(rng, n, length)
    if name == "WBFM":  # 75 kHz deviation at 200 kHz
        phase = np.cumsum(2 * np.pi * 75e3 / SAMPLE_RATE * audio, axis=1)
        return np.exp(1j * (phase + rng.uniform(-np.pi, np.pi, (n, 1))))
    if name == "AM-DSB":  # with carrier, modulation index 0.5 (our choice)
        return (1 + 0.5 * audio).astype(complex)
    if name == "AM-SSB":  # upper sideband, suppressed carrier
        return signal.hilbert(audio, axis=1)
    raise ValueError(name)


def modulate(rng: np.random.Generator, name: str, n: int, length: int) -> np.ndarray:
    """``n`` noise-free baseband bursts of ``name``, unit mean power: ``(n, length)``."""
    if name in ("BPSK", "QPSK", "8PSK", "PAM4", "QAM16", "QAM64"):
        x = _linear_modulation(rng, name, n, length)
    elif name in ("GFSK", "CPFSK"):
        x = _frequency_modulation(rng, name, n, length)
    elif name in ("WBFM", "AM-DSB", "AM-SSB"):
        x = _analog_modulation(rng, name, n, length)
    else:
        raise ValueError(f"unknown modulation {name!r}; the generator knows "
                         f"{list(RML2016_CLASSES)}")
    return x / np.sqrt(np.mean(np.abs(x) ** 2, axis=1, keepdims=True))


# --- channel ------------------------------------------------------------------------------

def _fractional_delay(x: np.ndarray, delay: float, ntaps: int = 8) -> np.ndarray:
    n = np.arange(ntaps) - (ntaps - 1) / 2
    taps = np.sinc(n - (delay - int(delay))) * np.hamming(ntaps)
    y = signal.lfilter(taps / taps.sum(), 1.0, x, axis=-1)
    shift = int(delay) + (ntaps - 1) // 2
    return np.concatenate([y[..., shift:], np.zeros(x.shape[:-1] + (shift,), x.dtype)], -1)


def apply_channel(rng: np.random.Generator, x: np.ndarray, snr_db: float, *,
                  snr_convention: str = "true", multipath: bool = True,
                  max_cfo_hz: float = 500.0, max_sro_hz: float = 50.0,
                  rician_k: float = 4.0) -> np.ndarray:
    """The reference's dynamic channel on ``(n, length)`` bursts of unit power."""
    n, length = x.shape
    t = np.arange(length)
    # sampling-clock offset: resample by (1 + eps), |eps| <= max_sro / fs
    eps = rng.uniform(-1, 1, (n, 1)) * max_sro_hz / SAMPLE_RATE
    positions = t[None, :] * (1 + eps) + rng.uniform(0, 1, (n, 1))
    positions = np.clip(positions, 0, length - 1)
    x = np.stack([np.interp(p, t, r.real) + 1j * np.interp(p, t, r.imag)
                  for p, r in zip(positions, x)])
    if multipath:
        los = np.sqrt(rician_k / (rician_k + 1)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (n, 3)))
        scatter = np.sqrt(1 / (rician_k + 1) / 2) * (rng.standard_normal((n, 3))
                                                     + 1j * rng.standard_normal((n, 3)))
        gains = (los + scatter) * np.array([1.0, 0.8, 0.3])
        x = sum(gains[:, i:i + 1] * (x if d == 0 else _fractional_delay(x, d))
                for i, d in enumerate((0.0, 0.9, 1.7)))
    cfo = rng.uniform(-1, 1, (n, 1)) * max_cfo_hz / SAMPLE_RATE
    x = x * np.exp(1j * (2 * np.pi * cfo * t[None, :] + rng.uniform(-np.pi, np.pi, (n, 1))))
    if snr_convention == "true":
        noise_power = 10 ** (-snr_db / 10)
    elif snr_convention == "rml2016":
        noise_power = 10 ** (-snr_db / 5)
    else:
        raise ValueError(f"snr_convention must be 'true' or 'rml2016', got {snr_convention!r}")
    noise = (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)) * np.sqrt(
        noise_power / 2)
    return x + noise


def _generate_legacy(n_per_condition: int, snrs, classes, frame_length: int, seed,
                     snr_convention: str, impairments: bool) -> tuple:
    rng = np.random.default_rng(seed)
    burst = frame_length + 512
    frames, labels, snr_list = [], [], []
    for c, name in enumerate(classes):
        for snr in snrs:
            x = modulate(rng, name, n_per_condition, burst)
            if impairments:
                x = apply_channel(rng, x, snr, snr_convention=snr_convention)
            else:
                x = apply_channel(rng, x, snr, snr_convention=snr_convention, multipath=False,
                                  max_cfo_hz=0, max_sro_hz=0)
            start = rng.integers(50, 500, n_per_condition)
            cut = x[np.arange(n_per_condition)[:, None], start[:, None] + np.arange(frame_length)]
            frames.append(np.stack([cut.real, cut.imag], 1))
            labels.append(np.full(n_per_condition, c))
            snr_list.append(np.full(n_per_condition, snr, float))
    return np.concatenate(frames).astype(np.float32), np.concatenate(labels), np.concatenate(
        snr_list), {}


def _check_convention(snr_convention: str) -> None:
    if snr_convention not in ("true", "rml2016"):
        raise ValueError(f"snr_convention must be 'true' or 'rml2016', got {snr_convention!r}")


def generate_radioml(n_per_condition: int = 100, *, snrs=RML2016_SNRS,
                     classes=RML2016_CLASSES, frame_length: int = 128, seed: int | None = 0,
                     snr_convention: str = "true", normalization: str = "l1",
                     impairments: bool = True, generator: str = "modgen",
                     config: ModGenConfig | None = None) -> AMRDataset:
    """``n_per_condition`` frames per (class, SNR), as RML2016.10a stores them.

    ``generator="modgen"``: the realistic generator (``config``, default
    :class:`~sigformer.data.modgen.ModGenConfig`; ``impairments=False`` keeps only the AWGN);
    ``"legacy"``: sigformer's earlier RML2016-style generator, unchanged."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    known = RML2016_CLASSES if generator == "legacy" else None
    if known is not None:
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; the generator knows {list(known)}")
    if frame_length < 16:
        raise ValueError(f"frame_length must be at least 16, got {frame_length}")
    _check_convention(snr_convention)
    if generator == "legacy":
        X, y, snr, params = _generate_legacy(n_per_condition, snrs, classes, frame_length, seed,
                                             snr_convention, impairments)
    else:
        cfg = config or ModGenConfig()
        if not impairments:
            cfg = cfg.only("awgn")
        labels, snr = condition_grid(n_per_condition, len(classes), snrs)
        try:
            frames = generate_frames(len(labels), classes=classes, config=cfg,
                                     frame_length=frame_length, labels=labels,
                                     snr_db=snr * (2 if snr_convention == "rml2016" else 1),
                                     seed=seed)
        except ValueError as err:
            if "unknown class" in str(err):
                raise ValueError(f"unknown classes: {err}") from None
            raise
        X, y, params = frames.as_iq_rows(), frames.y, frames.params
        if "awgn" not in cfg.impairments:  # no noise was added: record the SNR the frames have
            snr = np.full(len(labels), np.inf)
    X = normalize_frames(X, normalization)
    info = {"source": "sigformer.generate_radioml", "generator": generator, "seed": seed,
            "snr_convention": snr_convention, "normalization": normalization}
    if generator == "modgen":
        info["config"] = _config_json(cfg)
    return AMRDataset(X, y, snr, tuple(classes), info, params)


def _config_json(cfg: ModGenConfig) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def generate_amr(n_frames: int, *, classes=RML2016_CLASSES, config: ModGenConfig | None = None,
                 frame_length: int = 128, seed=0, normalization: str = "rms",
                 snr_db=None) -> AMRDataset:
    """``n_frames`` realistic frames, classes drawn uniformly, SNR uniform over
    ``config.snr_range`` (or ``snr_db``); ``classes=FAMILY_CLASSES`` for the family model."""
    cfg = config or ModGenConfig()
    frames = generate_frames(n_frames, classes=classes, config=cfg, frame_length=frame_length,
                             snr_db=snr_db, seed=seed)
    X = normalize_frames(frames.as_iq_rows(), normalization)
    return AMRDataset(X, frames.y, frames.params["snr_db"], tuple(classes),
                      {"source": "sigformer.generate_amr", "seed": _seed_json(seed),
                       "normalization": normalization, "config": _config_json(cfg)},
                      frames.params)


def _seed_json(seed):
    return seed if seed is None or isinstance(seed, int) else str(seed)


# --- DeepSig files ------------------------------------------------------------------------

def load_rml2016(path: str | Path, *, allow_pickle: bool = False) -> AMRDataset:
    """RML2016.10a/b (``RML2016.10a_dict.pkl``): a pickled ``{(mod, snr): (n, 2, 128)}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"RML2016 file {path} does not exist")
    if not allow_pickle:
        raise DataError(PICKLE_REFUSAL.format(path=path))
    import pickle

    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="latin1")  # noqa: S301 - explicit opt-in above
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a readable RML2016 pickle: {err}") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, tuple) and len(k) == 2 for k in data):
        raise DataError(f"{path} does not hold an RML2016 dict {{(modulation, snr): frames}}")
    classes = tuple(sorted({str(k[0]) for k in data}))
    X, y, snr = [], [], []
    for (mod, s), frames in sorted(data.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 3 or frames.shape[1] != 2:
            raise DataError(f"{path}: entry {(mod, s)} has shape {frames.shape}, expected "
                            f"(n, 2, length)")
        X.append(frames)
        y.append(np.full(len(frames), classes.index(str(mod))))
        snr.append(np.full(len(frames), float(s)))
    return AMRDataset(np.concatenate(X), np.concatenate(y), np.concatenate(snr), classes,
                      {"source": str(path)})


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux: ``MemAvailable``, which counts the page cache
    the kernel can drop - reading the file fills it; elsewhere the free pages), None where
    the OS does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_fits_in_memory(path: Path, n_frames: int, frame_shape: tuple[int, ...]) -> None:
    # the whole RML2018.01A file is ~21 GB as float32: refuse before the OS kills the process
    need = n_frames * int(np.prod(frame_shape)) * 4
    free = _available_memory()
    if free is not None and need > 0.8 * free:
        raise DataError(f"{path}: reading {n_frames:,} frames needs {need / 2**30:.1f} GiB, "
                        f"{free / 2**30:.1f} GiB are free; pass max_frames= (a random subset) "
                        "or min_snr= to read fewer")


def load_rml2018(path: str | Path, *, classes=RML2018_CLASSES, min_snr: float | None = None,
                 max_frames: int | None = None, seed: int = 0) -> AMRDataset:
    """RML2018.01A HDF5: ``X (N, 1024, 2)``, one-hot ``Y (N, 24)``, SNR ``Z (N, 1)``.
    ``max_frames`` reads a random subset (sorted indices, so h5py reads it lazily)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"RML2018 file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            missing = {"X", "Y", "Z"} - set(f.keys())
            if missing:
                raise DataError(f"{path} lacks the datasets {sorted(missing)} of RML2018.01A")
            n = f["X"].shape[0]
            if f["Y"].shape != (n, len(classes)):
                raise DataError(f"{path}: Y has shape {f['Y'].shape}, expected ({n}, "
                                f"{len(classes)}) one-hot over {len(classes)} classes")
            z = np.asarray(f["Z"][:]).reshape(-1)
            index = np.arange(n) if min_snr is None else np.flatnonzero(z >= min_snr)
            if max_frames is not None and len(index) > max_frames:
                rng = np.random.default_rng(seed)
                index = np.sort(rng.choice(index, max_frames, replace=False))
            _check_fits_in_memory(path, len(index), f["X"].shape[1:])
            X = np.asarray(f["X"][index], np.float32)
            y = np.asarray(f["Y"][index]).argmax(axis=1)
    except OSError as err:
        raise DataError(f"{path} is not a readable HDF5 file: {err}") from None
    if X.ndim != 3 or X.shape[2] != 2:
        raise DataError(f"{path}: X has shape {X.shape}, expected (N, length, 2)")
    return AMRDataset(X.transpose(0, 2, 1), y, z[index], tuple(classes), {"source": str(path)})
