"""Speech mixtures from folders of clean utterances, with references, noise and manifests.

:func:`make_mixture` places 2 or 3 utterances with a chosen overlap and level ratios and adds
noise at a chosen SNR; :func:`write_mixtures` writes a whole set in the LibriMix layout
(``mix_clean/``, ``mix_both/``, ``s1/``, ``s2/`` [``s3/``], ``noise/`` and
``metadata/mixture_<split>_mix_both.csv``) or the WSJ0-2mix layout (``<split>/mix``, ``s1``,
``s2``), so the same loader (:class:`MixtureSet`) reads sigformer's mixtures and those corpora.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import IterableDataset

from .io import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12)


def load_utterances(folder: str | Path, sample_rate: int, min_seconds: float = 0.5
                    ) -> dict[str, np.ndarray]:
    """Mono utterances of a folder (first channel), resampled to ``sample_rate``."""
    from ..speech.audio import read_audio

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    out = {}
    for f in files:
        audio, _ = read_audio(f, sample_rate)
        if audio.shape[1] >= min_seconds * sample_rate:
            out[f.stem] = audio[0]
    if not out:
        raise DataError(f"no utterance in {folder} is at least {min_seconds} s long")
    return out


def make_mixture(sources: list[np.ndarray], *, overlap: float = 1.0,
                 level_db: list[float] | None = None, noise: np.ndarray | None = None,
                 snr_db: float | None = None, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mix 2-3 utterances; returns ``(mixture, references (n_src, L), noise or None)``.

    ``overlap`` in [0, 1] is the overlapping fraction of the shorter of two consecutive
    utterances (1: the later one ends with the earlier one, so a shorter one lies wholly
    inside it; 0: back to back). ``level_db``
    sets each source's RMS level relative to the first (default 0 dB). ``noise`` is cut at a
    random offset (tiled if short) and scaled to ``snr_db`` against the summed speech.
    """
    if not 2 <= len(sources) <= 3:
        raise ValueError(f"mixtures take 2 or 3 sources, got {len(sources)}")
    if not 0 <= overlap <= 1:
        raise ValueError(f"overlap must be within [0, 1], got {overlap}")
    rng = rng or np.random.default_rng()
    level_db = list(level_db or [0.0] * len(sources))
    if len(level_db) != len(sources):
        raise ValueError(f"{len(level_db)} level ratios for {len(sources)} sources")
    starts = [0]
    for prev, cur in zip(sources[:-1], sources[1:]):
        shared = int(round(overlap * min(len(prev), len(cur))))
        starts.append(starts[-1] + len(prev) - shared)
    length = max(s + len(x) for s, x in zip(starts, sources))
    refs = np.zeros((len(sources), length))
    base = _rms(sources[0])
    for i, (start, x, db) in enumerate(zip(starts, sources, level_db)):
        refs[i, start:start + len(x)] = x * (base / _rms(x)) * 10 ** (db / 20)
    mixture = refs.sum(0)
    noise_ref = None
    if noise is not None:
        if snr_db is None:
            raise ValueError("noise needs snr_db")
        reps = int(np.ceil(length / len(noise))) + 1
        tiled = np.tile(noise, reps)
        offset = int(rng.integers(0, len(tiled) - length + 1))
        noise_ref = tiled[offset:offset + length]
        noise_ref = noise_ref * (_rms(mixture) / _rms(noise_ref)) * 10 ** (-snr_db / 20)
        mixture = mixture + noise_ref
    peak = max(np.abs(mixture).max(), np.abs(refs).max()) / 0.9
    if peak > 1:  # keep headroom without changing the ratios
        mixture, refs = mixture / peak, refs / peak
        noise_ref = None if noise_ref is None else noise_ref / peak
    return mixture.astype(np.float32), refs.astype(np.float32), (
        None if noise_ref is None else noise_ref.astype(np.float32))


def write_mixtures(clean_dir: str | Path, out_dir: str | Path, n_mixtures: int, *,
                   n_src: int = 2, sample_rate: int = 8000, overlap=(0.5, 1.0),
                   level_db=(-2.5, 2.5), noise_dir: str | Path | None = None,
                   snr_db=(0.0, 15.0), max_seconds: float | None = 4.0,
                   layout: str = "librimix", split: str = "test", seed: int = 0) -> Path:
    """Write ``n_mixtures`` mixtures (with references) and a manifest; returns the manifest
    path. Speakers are the file-name prefixes before ``_src``/``-``/``_`` when present; the
    sources of one mixture come from different files."""
    from ..speech.audio import write_audio

    if layout not in ("librimix", "wsj0-2mix"):
        raise ValueError(f"layout must be 'librimix' or 'wsj0-2mix', got {layout!r}")
    rng = np.random.default_rng(seed)
    utterances = load_utterances(clean_dir, sample_rate)
    names = sorted(utterances)
    if len(names) < n_src:
        raise DataError(f"{clean_dir} has {len(names)} usable utterances; {n_src}-speaker "
                        f"mixtures need at least {n_src}")
    noises = list(load_utterances(noise_dir, sample_rate).values()) if noise_dir else []
    out = Path(out_dir)
    rows = []
    for k in range(n_mixtures):
        picked = rng.choice(len(names), n_src, replace=False)
        srcs = []
        for i in picked:
            x = utterances[names[i]]
            if max_seconds is not None and len(x) > max_seconds * sample_rate:
                n = int(max_seconds * sample_rate)
                start = int(rng.integers(0, len(x) - n + 1))
                x = x[start:start + n]
            srcs.append(x)
        ov = float(rng.uniform(*overlap)) if np.ndim(overlap) else float(overlap)
        levels = [0.0] + [float(rng.uniform(*level_db)) for _ in range(n_src - 1)]
        noise = noises[int(rng.integers(len(noises)))] if noises else None
        snr = float(rng.uniform(*snr_db)) if noise is not None else None
        mix, refs, noise_ref = make_mixture(srcs, overlap=ov, level_db=levels, noise=noise,
                                            snr_db=snr, rng=rng)
        mix_id = "_".join(f"{names[i]}_{g:.2f}" for i, g in zip(picked, levels)) + f"_{k:04d}"
        row = {"mixture_ID": mix_id, "length": mix.shape[0], "overlap": round(ov, 3),
               "snr_db": None if snr is None else round(snr, 2)}
        if layout == "librimix":
            clean = refs.sum(0)
            row["mixture_path"] = str(write_audio(out / "mix_both" / f"{mix_id}.wav", mix,
                                                  sample_rate))
            write_audio(out / "mix_clean" / f"{mix_id}.wav", clean, sample_rate)
            if noise_ref is not None:
                row["noise_path"] = str(write_audio(out / "noise" / f"{mix_id}.wav", noise_ref,
                                                    sample_rate))
        else:
            row["mixture_path"] = str(write_audio(out / split / "mix" / f"{mix_id}.wav", mix,
                                                  sample_rate))
        for i, ref in enumerate(refs):
            folder = out / f"s{i + 1}" if layout == "librimix" else out / split / f"s{i + 1}"
            row[f"source_{i + 1}_path"] = str(write_audio(folder / f"{mix_id}.wav", ref,
                                                          sample_rate))
        rows.append(row)
    manifest = (out / "metadata" / f"mixture_{split}_mix_both.csv" if layout == "librimix"
                else out / f"{split}_manifest.csv")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@dataclass
class MixtureSet:
    """Mixtures and references listed in a manifest (LibriMix CSV or sigformer's), or a
    WSJ0-2mix-style folder (``mix/``, ``s1/``, ``s2/`` [``s3/``] with equal file names)."""

    mixtures: list[Path]
    sources: list[list[Path]]

    @classmethod
    def from_manifest(cls, path: str | Path) -> MixtureSet:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"manifest {path} does not exist")
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "mixture_path" not in rows[0]:
            raise DataError(f"{path} is not a mixture manifest (needs a mixture_path column)")
        keys = sorted(k for k in rows[0] if k.startswith("source_") and k.endswith("_path"))
        root = path.parent.parent

        def resolve(p: str) -> Path:
            q = Path(p)
            return q if q.is_absolute() or q.exists() else root / q

        return cls([resolve(r["mixture_path"]) for r in rows],
                   [[resolve(r[k]) for k in keys] for r in rows])

    @classmethod
    def from_folder(cls, folder: str | Path) -> MixtureSet:
        folder = Path(folder)
        mix = sorted((folder / "mix").glob("*.wav"))
        if not mix:
            raise DataError(f"{folder} has no mix/*.wav (WSJ0-2mix layout: mix/, s1/, s2/)")
        dirs = sorted(d for d in folder.iterdir() if d.is_dir() and d.name[:1] == "s"
                      and d.name[1:].isdigit())
        missing = [str(d / m.name) for m in mix for d in dirs if not (d / m.name).is_file()]
        if missing:
            raise DataError(f"{len(missing)} reference files are missing, e.g. {missing[0]}")
        return cls(mix, [[d / m.name for d in dirs] for m in mix])

    def __len__(self) -> int:
        return len(self.mixtures)

    def load(self, i: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mixture (L,), references (n_src, L))`` at ``sample_rate``."""
        from ..speech.audio import read_audio

        mix, _ = read_audio(self.mixtures[i], sample_rate)
        refs = [read_audio(p, sample_rate)[0][0] for p in self.sources[i]]
        n = min(mix.shape[1], *(len(r) for r in refs))
        return mix[0, :n], np.stack([r[:n] for r in refs])


def synthetic_voices(n: int, seconds: float, sample_rate: int, seed: int | None = 0
                     ) -> list[np.ndarray]:
    """Speech-like test signals when no recordings are at hand: a glottal-like harmonic
    source on a gliding F0 (85-255 Hz), shaped by three formant resonators that move between
    vowels, with a syllable-rate envelope and short pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    length = int(seconds * sample_rate)
    t = np.arange(length) / sample_rate
    out = []
    for _ in range(n):
        f0 = rng.uniform(85, 255) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t
                                                        + rng.uniform(0, 6)))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        source = sum(np.sin(k * phase) / k for k in range(1, int(sample_rate / 2 / 260)))
        voiced = np.zeros(length)
        seg = int(rng.uniform(0.15, 0.3) * sample_rate)
        for start in range(0, length, seg):
            stop = min(length, start + seg)
            y = source[start:stop]
            for formant, bw in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2300), 120),
                                (rng.uniform(2300, 3300), 160)):
                if formant >= sample_rate / 2:
                    continue
                r = np.exp(-np.pi * bw / sample_rate)
                a = [1, -2 * r * np.cos(2 * np.pi * formant / sample_rate), r * r]
                y = lfilter([1 - r], a, y)
            voiced[start:stop] = y * np.hanning(stop - start)
        envelope = (rng.random(int(np.ceil(length / seg))) > 0.15).repeat(seg)[:length]
        x = voiced * envelope
        out.append((x / (np.abs(x).max() + 1e-9) * 0.5).astype(np.float32))
    return out


# --- corpus listing, speaker-disjoint splits and dynamic mixing --------------------------------

# Speaker identity from a file stem, first match wins (documented in datasets/speech.md):
SPEAKER_RULES: tuple[tuple[str, str], ...] = (
    (r"^(?P<spk>\d+)-\d+-\d+$", "LibriSpeech/LibriTTS: <speaker>-<chapter>-<utterance>"),
    (r"^(?P<spk>p\d{3})_\d+", "VCTK: p<NNN>_<utterance>"),
    (r"(?:^|_)(?P<spk>[0-9A-Z][0-9a-z]{2})[a-z]\d{4}$",
     "WSJ / MC-WSJ-AV: the utterance id's first 3 characters"),
    (r"^(?P<spk>(?:spk|speaker|s)\d+)[_-]", "spk<N>_<utterance> and similar"),
    (r"^(?P<spk>.+_src_\d+)$", "SiSEC: every source index is a different talker"),
    (r"^(?P<spk>source\d+)_\d+$",
     "separation examples source<N>_<k>: source N is one talker across examples k (their "
     "audio overlaps)"),
)
MIXTURE_STEMS = ("mix", "mixture")


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    channel: int = 0  # the channel read from multichannel files
    gender: str | None = None  # 'female'/'male' when the name says so


def speaker_of(stem: str) -> str:
    """Speaker id of a file stem by :data:`SPEAKER_RULES`; otherwise the stem itself (each
    file its own talker)."""
    import re

    for pattern, _ in SPEAKER_RULES:
        match = re.search(pattern, stem)
        if match:
            return match.group("spk")
    return stem


def _gender_of(text: str) -> str | None:
    low = text.lower()
    return "female" if "female" in low else "male" if "male" in low else None


def list_speech(root: str | Path) -> tuple[list[Utterance], list[Path]]:
    """All single-talker speech and all noise files under ``root`` (recursively).

    A file is noise when its stem or a parent folder name contains ``noise``; mixtures
    (stems starting with ``mix``) are left out; everything else is speech, one talker per
    file, with the speaker from :func:`speaker_of`. Per-microphone files of one array
    recording share a speaker and an utterance id and are kept once."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    speech, noise, seen = [], [], set()
    for f in files:
        parts = [q.lower() for q in f.relative_to(root).parts]
        if any("noise" in q for q in parts):
            noise.append(f)
            continue
        if f.stem.lower().startswith(MIXTURE_STEMS):
            continue
        spk = speaker_of(f.stem)
        key = (spk, f.stem.split("_")[-1]) if spk != f.stem else (spk, f.stem)
        if key in seen:  # another microphone of the same recording
            continue
        seen.add(key)
        speech.append(Utterance(f, f"{f.parent.name}/{spk}", 0, _gender_of(f.stem)))
    if not speech:
        raise DataError(f"no speech files under {root} (only noise or mixtures)")
    return speech, noise


def speaker_splits(utterances: list[Utterance], fractions=(0.7, 0.15, 0.15), seed: int = 0,
                   min_speakers: int = 2) -> dict[str, list[Utterance]]:
    """Speaker-disjoint ``train``/``val``/``test`` splits: speakers (not files) are shuffled
    with ``seed`` and dealt out by ``fractions``; val and test get at least ``min_speakers``
    each (two-speaker mixtures need two), train the rest."""
    speakers = sorted({u.speaker for u in utterances})
    if len(speakers) < 3 * min_speakers:
        raise DataError(f"{len(speakers)} speakers cannot make three speaker-disjoint splits "
                        f"of at least {min_speakers} speakers each")
    order = list(np.random.default_rng(seed).permutation(speakers))
    n_val = max(min_speakers, int(round(fractions[1] * len(speakers))))
    n_test = max(min_speakers, int(round(fractions[2] * len(speakers))))
    groups = {"test": set(order[:n_test]), "val": set(order[n_test:n_test + n_val]),
              "train": set(order[n_test + n_val:])}
    return {name: [u for u in utterances if u.speaker in group] for name, group in
            groups.items()}


def noise_splits(noises: list, test_share: float = 0.25, seed: int = 0) -> dict[str, list]:
    """Noise files split ``train``/``test`` so a benchmark can score noises the model never
    heard: files shuffled with ``seed``, ``round(test_share * n)`` of them (at least one when
    ``test_share > 0`` and there are two or more) held out for test."""
    if not 0.0 <= test_share < 1.0:
        raise ValueError(f"test_share must be within [0, 1), got {test_share}")
    order = [noises[i] for i in np.random.default_rng(seed).permutation(len(noises))]
    n_test = int(round(test_share * len(order)))
    if test_share > 0 and len(order) >= 2:
        n_test = min(max(n_test, 1), len(order) - 1)
    return {"train": sorted(order[n_test:], key=str), "test": sorted(order[:n_test], key=str)}


def unheard_utterances(utterances: list[Utterance], training_files: dict[str, list[str]],
                       root: str | Path) -> tuple[list[Utterance], dict[str, str]]:
    """Utterances of speakers that a model trained on ``training_files`` (split name ->
    paths relative to ``root``, as ``scripts/train_speech.py`` records them) never heard,
    and each such speaker's role: ``"validation"`` when one of its files was in the
    ``val`` split (it steered training decisions such as the learning-rate schedule),
    ``"test"`` otherwise. Speakers are those of today's :data:`SPEAKER_RULES`, so files a
    later rule groups with a heard talker count as heard."""
    root = Path(root).resolve()

    def rel(u: Utterance) -> str:
        return str(Path(u.path).resolve().relative_to(root))

    train, val = set(training_files["train"]), set(training_files.get("val", []))
    listed = {rel(u) for u in utterances if Path(u.path).resolve().is_relative_to(root)}
    missing = sorted((train | val) - listed)
    if missing:  # another folder or layout: nothing would match, every speaker "unheard"
        raise DataError(f"{len(missing)} of the {len(train | val)} training and validation "
                        f"files the model's record names are not among the utterances under "
                        f"{root} (e.g. {missing[:3]}); point at the folder the model trained "
                        f"from, in the same layout, or heard speakers would count as unheard")
    heard = {u.speaker for u in utterances if rel(u) in train}
    unheard = [u for u in utterances if u.speaker not in heard]
    roles = {u.speaker: "test" for u in unheard}
    for u in unheard:
        if rel(u) in val:
            roles[u.speaker] = "validation"
    return unheard, roles


class AudioPool:
    """Lazily loaded, cached mono audio at one sample rate (one cache per DataLoader worker).
    Quiet recordings are RMS-normalised to -25 dBFS when loaded."""

    def __init__(self, items: list, sample_rate: int, min_seconds: float = 0.5):
        self.items, self.sample_rate, self.min_seconds = list(items), sample_rate, min_seconds
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int) -> np.ndarray:
        if i not in self._cache:
            from ..speech.audio import read_audio

            item = self.items[i]
            path, channel = (item.path, item.channel) if isinstance(item, Utterance) else (
                Path(item), 0)
            audio, _ = read_audio(path, self.sample_rate)
            x = audio[min(channel, audio.shape[0] - 1)].astype(np.float64)
            self._cache[i] = (x / _rms(x) * 10 ** (-25 / 20)).astype(np.float32)
        return self._cache[i]


def worker_rng(seed: int) -> np.random.Generator:
    """A generator that differs per DataLoader worker (and per process start)."""
    import torch.utils.data as tud

    info = tud.get_worker_info()
    return np.random.default_rng([seed, 0 if info is None else info.id + 1])


def segment_of(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= length:
        out = np.zeros(length, np.float32)
        start = int(rng.integers(0, length - len(x) + 1))
        out[start:start + len(x)] = x
        return out
    start = int(rng.integers(0, len(x) - length + 1))
    return x[start:start + length]


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch moves with it, as SpeechBrain's and
    MossFormer's speed perturbation) by band-limited resampling."""
    from fractions import Fraction

    if factor == 1.0:
        return x
    ratio = Fraction(factor).limit_denominator(100)
    from ..speech.audio import resample

    return resample(x[None], ratio.numerator, ratio.denominator)[0]


@dataclass
class DynamicMixConfig:
    sample_rate: int = 8000
    n_src: int = 2
    seconds: float = 4.0
    speed: tuple[float, float] | None = (0.95, 1.05)  # per source; None: off
    level_db: tuple[float, float] = (-2.5, 2.5)  # of source 2.. relative to source 1
    gain_db: tuple[float, float] = (-6.0, 6.0)  # overall level
    noise_snr_db: tuple[float, float] | None = None  # e.g. (0, 15); None: no noise
    reverb_probability: float = 0.0  # share of mixtures rendered in a random room
    rt60: tuple[float, float] = (0.2, 0.8)


class DrawnExamples(IterableDataset):
    """Examples drawn afresh at every step: ``n_items=None`` streams forever, a number yields
    that many per iteration (and per DataLoader worker); ``fixed=True`` draws the same ones
    every time (a validation set). Subclasses implement ``pair(rng) -> (input, target)``."""

    n_items: int | None
    seed: int
    fixed: bool
    _epoch: int = 0

    def __len__(self) -> int:
        if self.n_items is None:
            raise TypeError(f"an endless {type(self).__name__} has no length")
        return self.n_items

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __iter__(self):
        import torch

        seed = self.seed if self.fixed else self.seed + 7919 * self._epoch
        self._epoch += 1
        rng = worker_rng(seed)
        count = 0
        while self.n_items is None or count < self.n_items:
            x, y = self.pair(rng)
            yield torch.from_numpy(x), torch.from_numpy(y)
            count += 1


class DynamicMixtures(DrawnExamples):
    """``torch.utils.data.IterableDataset`` of fresh mixtures every step (dynamic mixing):
    ``n_src`` different speakers drawn from ``utterances`` (e.g. one split of
    :func:`speaker_splits`), random segments, speed perturbation, relative levels, overall
    gain, optional reverberation (pyroomacoustics; the references are the direct paths) and
    noise at a random SNR. Yields ``(mixture (L,), references (n_src, L))`` float32 tensors.

    ``n_items=None`` streams forever; with a number it yields that many per iteration and per
    DataLoader worker (and
    with ``fixed=True`` the same ones every time: a validation set). Usable in DataLoader
    workers (each worker draws with its own seed)."""

    def __init__(self, utterances: list[Utterance], noises: list | None = None,
                 config: DynamicMixConfig | None = None, n_items: int | None = None,
                 seed: int = 0, fixed: bool = False):
        self.utterances, self.noises, self.config = utterances, noises, config
        self.n_items, self.seed, self.fixed = n_items, seed, fixed
        c = config or DynamicMixConfig()
        speakers = sorted({u.speaker for u in utterances})
        if len(speakers) < c.n_src:
            raise DataError(f"{len(speakers)} speakers cannot make {c.n_src}-speaker mixtures")
        self.speakers_ = speakers
        self._by_speaker = {spk: [i for i, u in enumerate(utterances) if u.speaker == spk]
                            for spk in speakers}
        self._pool = AudioPool(utterances, c.sample_rate)
        self._noise = AudioPool(noises or [], c.sample_rate)
        self._epoch = 0

    def pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.draw(rng)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = self.config or DynamicMixConfig()
        length = int(c.seconds * c.sample_rate)
        by_speaker = rng.choice(len(self.speakers_), c.n_src, replace=False)
        sources = []
        for k in by_speaker:
            x = self._pool.get(int(rng.choice(self._by_speaker[self.speakers_[k]])))
            if c.speed is not None:
                x = speed_perturb(x, float(rng.uniform(*c.speed)))
            sources.append(segment_of(x, length, rng).astype(np.float64))
        if c.reverb_probability and rng.random() < c.reverb_probability:
            sources, images = _reverberate(sources, c, rng)
        else:
            images = sources
        levels = [0.0] + [float(rng.uniform(*c.level_db)) for _ in range(c.n_src - 1)]
        base = _rms(images[0])
        gains = [base / _rms(s) * 10 ** (db / 20) for s, db in zip(images, levels)]
        refs = np.stack([g * s for g, s in zip(gains, sources)])
        mixture = sum(g * s for g, s in zip(gains, images))
        if c.noise_snr_db is not None and len(self._noise):
            n = segment_of(self._noise.get(int(rng.integers(len(self._noise)))), length, rng)
            snr = float(rng.uniform(*c.noise_snr_db))
            mixture = mixture + n * (_rms(mixture) / _rms(n)) * 10 ** (-snr / 20)
        gain = 10 ** (float(rng.uniform(*c.gain_db)) / 20) * 0.1 / _rms(mixture)
        peak = max(np.abs(mixture).max(), np.abs(refs).max()) * gain / 0.95
        gain = gain / max(1.0, peak)
        return (mixture * gain).astype(np.float32), (refs * gain).astype(np.float32)


def _reverberate(sources, c: DynamicMixConfig, rng: np.random.Generator):
    """Sources in one random shoebox room at one microphone: (direct paths, reverberant)."""
    import pyroomacoustics as pra

    length = len(sources[0])
    dims = np.array([rng.uniform(4, 8), rng.uniform(4, 8), rng.uniform(2.5, 3.5)])
    absorption, order = pra.inverse_sabine(float(rng.uniform(*c.rt60)), dims)
    mic = np.array([rng.uniform(1, d - 1) for d in dims])[:, None]
    direct, reverberant = [], []
    for s in sources:
        pos = [rng.uniform(0.5, d - 0.5) for d in dims]
        for max_order, out in ((0, direct), (min(order, 12), reverberant)):
            room = pra.ShoeBox(dims, fs=c.sample_rate, materials=pra.Material(absorption),
                               max_order=max_order)
            room.add_source(pos, signal=s)
            room.add_microphone_array(mic)
            room.simulate()
            out.append(room.mic_array.signals[0, :length])
    return direct, reverberant
