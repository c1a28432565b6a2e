"""DeepMIMO v2 ray-traced scenarios as a second, independent source of OFDM channels.

A DeepMIMO v2 scenario folder holds ``params.mat`` and ``BS{b}_UE_{a}-{z}.mat`` files; each
user's ``channels{i}.p`` is an ``8 x n_paths`` array of rows phase (deg), time of arrival (s),
received power (dBm for 0 dBm sent), DoA azimuth/elevation, DoD azimuth/elevation (deg) and a
LoS flag. :func:`deepmimo_ofdm_dataset` turns the paths into channels on any
:class:`~sigformer.data.ofdm.OFDMConfig` grid (static: ray tracing has no Doppler), normalised
per link to unit mean power, with pilots and noise as in the simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import DataError
from .ofdm import OFDMConfig, OFDMDataset, qpsk, rms_delay_spread

PATH_ROWS = ("phase_deg", "toa_s", "power_dbm", "doa_az", "doa_el", "dod_az", "dod_el", "los")


@dataclass
class DeepMIMOLink:
    """The paths of one base-station-to-user link."""

    bs: int
    user: int
    paths: np.ndarray  # (8, n_paths), rows as PATH_ROWS
    rx_loc: np.ndarray

    @property
    def los(self) -> bool:
        return bool(np.any(self.paths[7] > 0))

    def frequency_response(self, frequencies_hz: np.ndarray, relative_delay: bool = True
                           ) -> np.ndarray:
        """``H(f) = sum_l sqrt(P_l) e^{j phi_l} e^{-j 2 pi f tau_l}`` (P in W). With
        ``relative_delay`` the first arrival is at 0 (the receiver's timing sync)."""
        phase = np.deg2rad(self.paths[0])
        tau = self.paths[1] - (self.paths[1].min() if relative_delay else 0.0)
        amp = np.sqrt(10 ** ((self.paths[2] - 30) / 10))
        return (amp * np.exp(1j * phase) * np.exp(
            -2j * np.pi * np.outer(frequencies_hz, tau))).sum(axis=1)

    def delay_spread_s(self) -> float:
        return rms_delay_spread(self.paths[1], 10 ** (self.paths[2] / 10))


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except (MatReadError, ValueError, OSError, TypeError, NotImplementedError, IndexError,
            KeyError) as err:
        raise DataError(f"{path} is not a readable DeepMIMO v2 .mat file: {err}") from None


def read_deepmimo_bs(path: str | Path) -> list[DeepMIMOLink]:
    """Links with at least one path from one ``BS{b}_UE_*.mat`` file."""
    path = Path(path)
    match = re.match(r"BS(\d+)_UE_", path.name)
    if not path.is_file():
        raise DataError(f"DeepMIMO file {path} does not exist")
    if match is None:
        raise DataError(f"{path.name}: expected a DeepMIMO v2 user file named BS<b>_UE_<a>-<z>.mat")
    mat = _load_mat(path)
    if "channels" not in mat or "rx_locs" not in mat:
        raise DataError(f"{path} lacks the DeepMIMO arrays 'channels' and 'rx_locs'")
    channels, rx = mat["channels"].ravel(), np.asarray(mat["rx_locs"], float)
    links = []
    for user, cell in enumerate(channels):
        try:
            paths = np.asarray(cell["p"][0, 0] if cell.dtype.names else cell, float)
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataError(f"{path}: user {user} has no path array 'p'") from None
        if paths.size == 0:
            continue
        if paths.shape[0] != len(PATH_ROWS):
            raise DataError(f"{path}: user {user} has {paths.shape[0]} path rows, expected "
                            f"{len(PATH_ROWS)} ({', '.join(PATH_ROWS)})")
        links.append(DeepMIMOLink(int(match.group(1)), user, paths, rx[user, :3]))
    return links


def read_deepmimo(folder: str | Path, base_stations: list[int] | None = None
                  ) -> list[DeepMIMOLink]:
    """All links of a scenario folder, ordered by base station then user."""
    folder = Path(folder)
    files = sorted(folder.glob("BS*_UE_*.mat"),
                   key=lambda p: int(re.match(r"BS(\d+)", p.name).group(1)))
    if base_stations is not None:
        files = [f for f in files if int(re.match(r"BS(\d+)", f.name).group(1)) in base_stations]
    if not files:
        raise DataError(f"no DeepMIMO user files (BS<b>_UE_<a>-<z>.mat) in {folder}")
    return [link for f in files for link in read_deepmimo_bs(f)]


def deepmimo_ofdm_dataset(links: list[DeepMIMOLink], *, snr_db=10.0,
                          config: OFDMConfig | None = None, seed: int | None = 0,
                          max_links: int | None = None,
                          snr_definition: str = "pilot") -> OFDMDataset:
    """Static OFDM channels from ray-traced links, unit mean power per link, QPSK pilots and
    AWGN at ``snr_db`` (a number or a list to draw from) under ``snr_definition`` as
    :func:`~sigformer.data.ofdm.simulate_ofdm` defines it (``"pilot"``: noise variance
    ``10^(-SNR/10)`` per RE; ``"measured_grid"``: relative to the received grid's power, with
    only the pilots occupied). The statistics carry each link's RMS delay spread and a
    Doppler of 0 Hz."""
    from .ofdm import SNR_DEFINITIONS

    if snr_definition not in SNR_DEFINITIONS:
        raise ValueError(f"snr_definition must be one of {SNR_DEFINITIONS}, got "
                         f"{snr_definition!r}")
    config = config or OFDMConfig()
    rng = np.random.default_rng(seed)
    if max_links is not None and len(links) > max_links:
        links = [links[i] for i in np.sort(rng.choice(len(links), max_links, replace=False))]
    if not links:
        raise DataError("no DeepMIMO links to build channels from")
    freqs = config.subcarrier_frequencies
    h = np.stack([link.frequency_response(freqs) for link in links])
    h /= np.sqrt(np.mean(np.abs(h) ** 2, axis=1, keepdims=True))
    channels = np.repeat(h[:, :, None], config.n_symbols, axis=2).astype(np.complex64)
    snr = np.atleast_1d(np.asarray(snr_db, float))
    snr = np.full(len(links), snr[0]) if len(snr) == 1 else rng.choice(snr, len(links))
    shape = (len(links), *config.pilot_shape)
    x = qpsk(rng, shape)
    h_p = channels[:, config.pilot_subcarriers[:, None], list(config.pilot_symbols)]
    var = 10 ** (-snr / 10)
    if snr_definition == "measured_grid":  # as simulate_ofdm: pilots only, empty REs zero
        var = var * (np.abs(h_p * x) ** 2).sum(axis=(1, 2)) / channels[0].size
    noise = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * np.sqrt(
        var / 2)[:, None, None]
    ls = ((h_p * x + noise) / x).astype(np.complex64)
    ds = np.array([link.delay_spread_s() * 1e9 for link in links])
    return OFDMDataset(channels, ls, snr, ds, np.zeros(len(links)), var, config,
                       profile="DeepMIMO", snr_definition=snr_definition)
