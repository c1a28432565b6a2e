"""Writes the example notebooks from their cell sources (run, then execute, to refresh them).

    python notebooks/_build.py && python notebooks/_execute.py
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text):
    return nbf.v4.new_code_cell(text.strip())


NB01 = [
    md("""
# Motor-imagery decoding with DBConformer

This notebook walks the offline EEG path of sigformer end to end:

1. simulate (or load) a continuous recording with cue annotations,
2. preprocess it with the same stages that run in streaming,
3. cut epochs, align them (Euclidean alignment) and train DBConformer through the
   scikit-learn estimator,
4. evaluate with MOABB-style within-session cross-validation and look at the results,
5. save a checkpoint (safetensors + JSON) and load it back.

Sizes are kept small so the notebook runs in about a minute on a laptop CPU (the test suite
executes it). The same steps on real data are in `pipelines/eeg_mi_dbconformer.yaml` and
`benchmarks/eeg_mi.py`.
"""),
    code("""
import warnings
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message="IProgress not found")
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.signal import welch

import sigformer
from sigformer.data import simulate_motor_imagery
from sigformer.stages import BandPass, EuclideanAlignment, Pipeline, Scale
print("sigformer", sigformer.__version__)
"""),
    md("""
## 1. A simulated recording

The built-in simulator places mu (≈11 Hz) and beta (≈22 Hz) rhythms under C3 and C4 on a
spatially smooth 1/f background. Imagining the left hand desynchronises the *right*
hemisphere (C4) and vice versa: the classic lateralised ERD.
"""),
    code("""
rec = simulate_motor_imagery(n_trials=60, sfreq=125.0, trial_duration=3.0, snr_db=-3.0,
                             erd=0.5, seed=0)
print(rec.n_channels, "channels,", f"{rec.duration:.0f} s at {rec.sfreq:g} Hz,",
      len(rec.annotations), "cues:", sorted({a.description for a in rec.annotations}))
"""),
    code("""
epochs = rec.epochs({"left_hand": 0, "right_hand": 1}, tmin=0.0, tmax=3.0)
f, psd = welch(epochs.data, epochs.sfreq, nperseg=125)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, ch in zip(axes, ("C3", "C4")):
    i = epochs.channels.index(ch)
    for label, name in enumerate(("left_hand", "right_hand")):
        ax.semilogy(f, psd[epochs.labels == label, i].mean(0), label=name)
    ax.set(title=f"{ch}", xlabel="Hz", xlim=(2, 40))
axes[0].set_ylabel("PSD (V²/Hz)"); axes[0].legend()
plt.tight_layout()
"""),
    md("""
## 2. Preprocessing stages

Stages work on a whole recording (`transform`) and chunk by chunk (`process`) with the same
result for causal filters, which is what the streaming runtime relies on. Offline we use the
zero-phase variant of the 8–32 Hz band-pass (MOABB's motor-imagery default).
"""),
    code("""
pre = Pipeline([BandPass(8, 32, phase="zero"), Scale(1e6)])  # volts -> microvolts
clean = pre.transform(rec)
epochs = clean.epochs({"left_hand": 0, "right_hand": 1}, tmin=0.0, tmax=3.0)
X, y = epochs.data.astype("float32"), np.array(["left_hand", "right_hand"])[epochs.labels]
print(X.shape)

# streaming gives the causal filter's output, chunk by chunk
causal = BandPass(8, 32)
causal.configure(rec.sfreq, rec.channels)
chunks = [causal.process(rec.data[:, i:i + 32]) for i in range(0, rec.n_times, 32)]
offline = BandPass(8, 32).transform(rec).data
print("chunked == whole:", np.allclose(np.concatenate(chunks, axis=1), offline))
"""),
    md("""
## 3. DBConformer through the scikit-learn estimator

`SignalClassifier` takes any registered model by name. DBConformer's reference configuration
(22 channels, 1001 samples at 250 Hz) has exactly 93,747 parameters; here a smaller temporal
patch fits the 3 s, 125 Hz epochs. Euclidean alignment runs per fold (`mode="batch"`), as in
DBConformer's cross-validation protocol.
"""),
    code("""
from sklearn.pipeline import make_pipeline
from sigformer.estimators import SignalClassifier
from sigformer.evaluation import within_session_cv
from sigformer.models import create_model

print("reference DBConformer:",
      sum(p.numel() for p in create_model("dbconformer", preset="bnci2014001").parameters()),
      "parameters")
clf = SignalClassifier(model="dbconformer", model_params=dict(patch_size=62),
                       max_epochs=30, lr=1e-3, random_state=0)
pipe = make_pipeline(EuclideanAlignment(mode="batch"), clf)
result = within_session_cv(pipe, X, y, n_splits=3)
for metric, s in result.summary().items():
    print(f"{metric:18s} {s['mean']:.3f} ± {s['std']:.3f}")
"""),
    code("""
from sigformer.report import plot_confusion_matrix, plot_learning_curves
plot_confusion_matrix(result.confusion, result.classes, title="DBConformer, 3-fold CV")
plot_learning_curves(result.histories, title="DBConformer");
"""),
    md("""
## 4. Real recordings (PhysioNet eegmmidb)

When the project's shared recordings are present, the same code runs on subject S001's
imagined left/right-fist runs (4, 8, 12), with BCI2000 channel names (`Fc5.`) normalised.
"""),
    code("""
from sigformer.data import load_eegmmidb
real_dir = Path("../../shared/data/eeg_mi/eegmmidb")
if (real_dir / "S001R04.edf").exists():
    real = load_eegmmidb(real_dir, subject=1, runs="imagined_left_right",
                         preprocess=Pipeline([BandPass(8, 32, phase="zero"), Scale(1e6)]))
    print(real.data.shape, real.event_id, real.channels.names[:6])
else:
    print("eegmmidb not found at", real_dir.resolve(), "- skipping the real-data cell")
"""),
    md("""
## 5. Checkpoints and braindecode baselines

Checkpoints are safetensors weights plus a JSON config; loading never unpickles. Any
braindecode model is available by name, so baselines drop into the same estimator.
"""),
    code("""
import tempfile
fitted = make_pipeline(EuclideanAlignment(), SignalClassifier(
    model="dbconformer", model_params=dict(patch_size=62), max_epochs=5)).fit(X, y)
with tempfile.TemporaryDirectory() as tmp:
    fitted[-1].save(Path(tmp) / "dbconformer")
    print(sorted(p.name for p in (Path(tmp) / "dbconformer").iterdir()))
    loaded = SignalClassifier.load(Path(tmp) / "dbconformer")
    Xa = fitted[0].transform(X)
    print("same predictions after reload:",
          np.array_equal(loaded.predict(Xa), fitted[-1].predict(Xa)))

eegnet = SignalClassifier(model="braindecode.EEGNet", max_epochs=20, lr=3e-3).fit(X, y)
print("EEGNet training accuracy:", round(eegnet.score(X, y), 3))
"""),
]


def main():
    nb = nbf.v4.new_notebook()
    nb.cells = NB01
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbf.write(nb, HERE / "01_eeg_motor_imagery.ipynb")


if __name__ == "__main__":
    main()
