"""Preprocessing stages with one API for whole recordings and for chunk-by-chunk streaming.

Every stage is configured once with the input sampling rate and channel set, then either

* ``stage.transform(recording)`` processes a whole :class:`~sigformer.Recording` offline, or
* ``stage.process(chunk)`` processes successive ``(n_channels, n_samples)`` chunks, carrying
  internal state (filter memories, resampler phase, running statistics) between calls.

For every causal stage, concatenating the ``process`` outputs over any chunking gives the same
result as one call on the whole array (tested with hypothesis). Filters also offer
``phase="zero"`` (forward-backward, no delay) for offline analysis; such a stage refuses to
stream, since zero-phase filtering needs the future.

Modules by concern: ``base`` (the interface), ``filters``, ``resample`` (the one resampler),
``channel_ops``, ``scaling``, ``pipeline`` (sequences and the config registry),
``alignment`` (Euclidean alignment).
"""

from .alignment import EuclideanAlignment, inverse_sqrtm, trial_covariances
from .base import NotConfiguredError, Stage, StageConfigError, StreamFormat
from .channel_ops import AdaptChannels, Bipolar, PickChannels, Rereference
from .filters import BandPass, Notch
from .pipeline import STAGES, Pipeline, registry_name, stage_from_config
from .resample import Resample, resample_array
from .scaling import Scale, Standardize

__all__ = [
    "STAGES", "AdaptChannels", "BandPass", "Bipolar", "EuclideanAlignment", "Notch",
    "NotConfiguredError", "PickChannels", "Pipeline", "Resample", "Rereference", "Scale", "Stage",
    "StageConfigError", "Standardize", "StreamFormat", "registry_name", "resample_array",
    "stage_from_config", "inverse_sqrtm", "trial_covariances",
]
