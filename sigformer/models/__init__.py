"""Models by domain, reachable through the registry."""

import warnings

# braindecode 1.8.1 builds a 'standard_1020' montage at import, which MNE 1.13 flags as
# deprecated; it is harmless with the pinned mne<1.14 and says nothing to our users.
warnings.filterwarnings("ignore", message="Montage name 'standard_1020' is deprecated",
                        category=FutureWarning)

from .eeg.dbconformer import DBConformer  # noqa: E402
from .eeg.duin import DuINClassifier, DuINMAE, DuINVQVAE  # noqa: E402
from .eeg.tfm_tokenizer import TFMClassifier, TFMEncoder, TFMTokenizer  # noqa: E402
from .registry import (  # noqa: E402
                        UnknownModelError,
                        create_model,
                        get_model_class,
                        list_models,
                        list_presets,
                        register_model,
)
from .rf.adafortitran import AdaFortiTran, FortiTran  # noqa: E402
from .rf.amr_resnet import AMRResNet  # noqa: E402
from .rf.clst import ClST  # noqa: E402
from .rf.kd_cnn import KDCNN  # noqa: E402
from .rf.kd_mobilenet import KDMobileNet  # noqa: E402
from .rf.mcldnn import MCLDNN  # noqa: E402
from .rf.ofdm_linear import OFDMLinear  # noqa: E402
from .rf.vtcnn2 import VTCNN2  # noqa: E402
from .speech.deftan2 import DeFTAN2  # noqa: E402
from .speech.mossformer import MossFormer  # noqa: E402

__all__ = [
    "AMRResNet", "AdaFortiTran", "ClST", "DBConformer", "DeFTAN2", "DuINClassifier", "DuINMAE", "DuINVQVAE", "FortiTran", "KDCNN", "KDMobileNet", "MCLDNN", "MossFormer", "OFDMLinear", "TFMClassifier", "TFMEncoder", "TFMTokenizer", "UnknownModelError", "VTCNN2", "create_model", "get_model_class", "list_models",
    "list_presets", "register_model",
]
