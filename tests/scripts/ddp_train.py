"""Train DBConformer with Lightning DDP on 2 CPU processes (gloo); run by test_training.py.

Lightning re-launches this script once per extra rank; every rank writes its world size and a
fingerprint of its final weights, which must agree across ranks (gradients were all-reduced).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from sigformer.models import create_model
from sigformer.training import train_classifier

out_dir = Path(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 4, 101)).astype(np.float32)
y = np.arange(32) % 2
X[y == 1, 0] *= 3
model = create_model("dbconformer", n_chans=4, n_outputs=2, n_times=101, emb_size=8,
                     num_heads=2, depth=1, spa_dim=4, patch_size=25)
train_classifier(model, X, y, max_epochs=2, batch_size=8, devices=2, strategy="ddp",
                 progress_bar=False, seed=0)
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
fingerprint = float(sum(p.double().sum() for p in model.parameters()))
(out_dir / f"rank{rank}.json").write_text(json.dumps({"world_size": world,
                                                      "fingerprint": fingerprint}))
