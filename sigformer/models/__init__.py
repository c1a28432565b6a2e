"""Models by domain, reachable through the registry.

Model classes are imported on first access (``from sigformer.models import DBConformer``
works as before), so ``import sigformer.models`` and listing models stay fast.
"""

import importlib
import warnings

# braindecode 1.8.1 builds a 'standard_1020' montage at import, which MNE 1.13 flags as
# deprecated; it is harmless with the pinned mne<1.14 and says nothing to our users.
warnings.filterwarnings("ignore", message="Montage name 'standard_1020' is deprecated",
                        category=FutureWarning)

from .registry import (  # noqa: E402
    MODEL_INDEX,
    UnknownModelError,
    UnknownPresetError,
    create_model,
    get_model_class,
    list_domains,
    list_models,
    list_presets,
    register_model,
)

_CLASSES = {
    "DBConformer": "eeg.dbconformer", "DuINClassifier": "eeg.duin", "DuINMAE": "eeg.duin",
    "DuINVQVAE": "eeg.duin", "TFMClassifier": "eeg.tfm_tokenizer",
    "TFMEncoder": "eeg.tfm_tokenizer", "TFMTokenizer": "eeg.tfm_tokenizer",
    "AdaFortiTran": "rf.adafortitran", "FortiTran": "rf.adafortitran",
    "AMRResNet": "rf.amr_resnet", "ClST": "rf.clst", "KDCNN": "rf.kd_cnn",
    "KDMobileNet": "rf.kd_mobilenet", "MCLDNN": "rf.mcldnn", "OFDMLinear": "rf.ofdm_linear",
    "VTCNN2": "rf.vtcnn2", "DeFTAN2": "speech.deftan2", "MossFormer": "speech.mossformer",
}


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*sorted(_CLASSES), "MODEL_INDEX", "UnknownModelError", "UnknownPresetError",
           "create_model", "get_model_class", "list_domains", "list_models", "list_presets",
           "register_model"]
