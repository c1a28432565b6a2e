"""DBConformer: dual-branch convolutional transformer for EEG decoding.

Wang et al., "DBConformer: Dual-Branch Convolutional Transformer for EEG Decoding",
IEEE JBHI 30(5), 2026 (arXiv 2506.21140). Re-implemented from the paper and the layer-by-layer
specification in ``shared/reference/eeg_models.md`` section 1 (no official code is copied).
"""

from __future__ import annotations

import torch
from braindecode.models.base import EEGModuleMixin
from torch import nn

from ...nn import TransformerEncoder, learnable_positions
from ..registry import register_model

_BRANCHES = ("all", "temporal", "spatial")


class _TemporalStem(nn.Module):
    """IFNet-style stem: pointwise spatial conv + BN, depthwise temporal convs + BN per radix
    group, summed, GELU, (drop last sample), average pooling into patches, dropout."""

    def __init__(self, n_chans: int, emb_size: int, kernel_size: int, patch_size: int,
                 radix: int, drop_last_sample: bool, dropout: float):
        super().__init__()
        self.emb_size, self.drop_last_sample, self.radix = emb_size, drop_last_sample, radix
        mid = emb_size * radix
        self.spatial = nn.Sequential(
            nn.Conv1d(n_chans * radix, mid, 1, groups=radix, bias=False), nn.BatchNorm1d(mid)
        )
        self.temporal = nn.ModuleList()
        for _ in range(radix):  # each further radix group halves the kernel
            self.temporal.append(nn.Sequential(
                nn.Conv1d(emb_size, emb_size, kernel_size, padding=kernel_size // 2,
                          groups=emb_size, bias=False),
                nn.BatchNorm1d(emb_size),
            ))
            kernel_size //= 2
        self.pool = nn.AvgPool1d(patch_size, patch_size)
        self.dropout = nn.Dropout(dropout)
        self.apply(_init_stem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, P, D)
        if self.radix > 1:  # IFNet feeds one band-filtered copy per group; we feed the input
            x = x.repeat(1, self.radix, 1)
        groups = torch.split(self.spatial(x), self.emb_size, dim=1)
        out = nn.functional.gelu(sum(conv(g) for g, conv in zip(groups, self.temporal)))
        if self.drop_last_sample:
            out = out[:, :, :-1]
        return self.dropout(self.pool(out)).transpose(1, 2)


def _init_stem(module: nn.Module) -> None:
    # The reference initialises only the temporal stem explicitly.
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class _SpatialEmbedding(nn.Module):
    """One token per channel: per-channel strided conv, ELU, global average, linear."""

    def __init__(self, spa_dim: int, emb_size: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(1, spa_dim, kernel_size=25, stride=5, padding=12), nn.ELU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(spa_dim, emb_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, D)
        b, c, t = x.shape
        return self.encoder(x.reshape(b * c, 1, t)).view(b, c, -1)


@register_model("dbconformer", domain="eeg", presets={
    # Configurations of the reference's scripts (depth 2 = CO/CV; LOSO uses depth 6 on some sets).
    "bnci2014001": dict(n_chans=22, n_times=1001, sfreq=250, n_outputs=2),
    "bnci2014004": dict(n_chans=3, n_times=1126, sfreq=250, n_outputs=2),
    "zhou2016": dict(n_chans=14, n_times=1251, sfreq=250, n_outputs=2),
    "bnci2014002": dict(n_chans=15, n_times=2561, sfreq=512, n_outputs=2, patch_size=128,
                        depth=4),
    "tiny": dict(emb_size=16, depth=1, num_heads=4, spa_dim=8, patch_size=32),
})
class DBConformer(EEGModuleMixin, nn.Module):
    """DBConformer (Wang et al., 2026): temporal and spatial conformer branches.

    The temporal branch (T-Conformer) turns an IFNet-style convolutional stem into ``P = n_times
    // patch_size`` temporal tokens; the spatial branch (S-Conformer) embeds every channel into
    one token. Each branch runs a pre-LN transformer; temporal tokens are mean-pooled and
    spatial tokens pooled by a lightweight channel attention; the concatenation feeds an MLP.

    Input ``(B, n_chans, n_times)`` (or ``(B, 1, n_chans, n_times)`` as in the official code);
    output logits ``(B, n_outputs)``, or ``(features (B, 2*emb_size), logits)`` when
    ``return_features=True``. Reference configuration (BNCI2014001 2-class, 22 channels, 1001
    samples, depth 2): 93,747 parameters, tokens (B, 8, 40) and (B, 22, 40), features (B, 80).

    Parameters
    ----------
    emb_size : token dimension D (40).
    depth : transformer blocks per branch (2; the reference's LOSO runs use 6 on some sets).
    num_heads : attention heads (10).
    spa_dim : channels of the spatial branch's per-channel conv (16).
    patch_size : temporal patch length in samples (125 at 250 Hz, 128 at 512 Hz).
    kernel_size, radix : temporal stem depthwise kernel (63) and number of groups (1; with
        ``radix > 1`` every group sees a copy of the input and halves the previous kernel).
    branch : ``"all"`` (dual branch), ``"temporal"`` or ``"spatial"`` (ablations; as released,
        both branches are still computed and single-branch heads take mean-pooled tokens).
    chn_atten : channel-attention pooling of spatial tokens (True) or mean pooling (False).
    pos_emb : learnable positional embeddings on both token sets (True).
    gate : gated fusion of the two branches instead of concatenation (False; "reduced
        performance" per the authors).
    drop_last_sample : drop the stem's last time sample before pooling (True, as released for
        every dataset except BCI Competition IV-1, where T is already a multiple of the patch).
    attn_scale : ``"embed"`` scales attention logits by ``1/sqrt(emb_size)`` as released
        (inherited from EEG Conformer); ``"head"`` uses the standard ``1/sqrt(head_dim)``.
    dropout : dropout in the stem and transformer blocks (0.5).
    """

    def __init__(self, n_chans=None, n_outputs=None, n_times=None, sfreq=None, chs_info=None,
                 input_window_seconds=None, *, emb_size: int = 40, depth: int = 2,
                 num_heads: int = 10, spa_dim: int = 16, patch_size: int = 125,
                 kernel_size: int = 63, radix: int = 1, branch: str = "all",
                 chn_atten: bool = True, pos_emb: bool = True, gate: bool = False,
                 drop_last_sample: bool = True, attn_scale: str = "embed",
                 dropout: float = 0.5, return_features: bool = False):
        super().__init__(n_outputs=n_outputs, n_chans=n_chans, chs_info=chs_info,
                         n_times=n_times, input_window_seconds=input_window_seconds, sfreq=sfreq)
        del n_outputs, n_chans, chs_info, n_times, input_window_seconds, sfreq
        if branch not in _BRANCHES:
            raise ValueError(f"branch must be one of {_BRANCHES}, got {branch!r}")
        n_used = self.n_times - int(drop_last_sample)
        if n_used < patch_size:
            raise ValueError(f"n_times={self.n_times} is shorter than one patch "
                             f"(patch_size={patch_size}); use a longer window or smaller patch")
        self.branch, self.gate, self.chn_atten, self.pos_emb = branch, gate, chn_atten, pos_emb
        self.return_features = return_features
        # The reference computes P = n_times // patch_size, which disagrees with the pooled
        # length when n_times is a multiple of the patch; count what pooling really yields.
        self.n_patches = n_used // patch_size

        self.temporal_embedding = _TemporalStem(self.n_chans, emb_size, kernel_size, patch_size,
                                                radix, drop_last_sample, dropout)
        self.spatial_embedding = _SpatialEmbedding(spa_dim, emb_size)
        if pos_emb:
            self.pos_embedding_temporal = learnable_positions(self.n_patches, emb_size)
            self.pos_embedding_spatial = learnable_positions(self.n_chans, emb_size)
        block = dict(dropout=dropout, attn_scale=attn_scale, norm_first=True)
        self.temporal_transformer = TransformerEncoder(depth, emb_size, num_heads, **block)
        self.spatial_transformer = TransformerEncoder(depth, emb_size, num_heads, **block)

        fused_dim = 2 * emb_size
        if gate or branch != "all":
            # As released: single-branch and gated variants share this (unused for single
            # branch) gate layer and a head on D features.
            self.gate_fc = nn.Linear(2 * emb_size, emb_size)
            fused_dim = emb_size
        elif chn_atten:
            self.spatial_attn_pool = nn.Sequential(
                nn.Linear(emb_size, emb_size), nn.Tanh(), nn.Linear(emb_size, 1)
            )
        self.final_layer = nn.Sequential(
            nn.Linear(fused_dim, 64), nn.ELU(), nn.Dropout(0.5),
            nn.Linear(64, 32), nn.ELU(), nn.Dropout(0.3),
            nn.Linear(32, self.n_outputs),
        )

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer outputs: temporal ``(B, P, D)`` and spatial ``(B, C, D)`` tokens."""
        if x.dim() == 4:  # (B, 1, C, T) as the official scripts feed it
            x = x.squeeze(1)
        # the learned temporal positions fix the patch count, so the length must match too
        wrong_length = self.pos_emb and x.dim() == 3 and x.shape[2] != self.n_times
        if x.dim() != 3 or x.shape[1] != self.n_chans or wrong_length:
            raise ValueError(f"DBConformer expects input (batch, {self.n_chans} channels, "
                             f"{self.n_times} samples), got {tuple(x.shape)}")
        temporal = self.temporal_embedding(x)
        spatial = self.spatial_embedding(x)
        if self.pos_emb:
            temporal = temporal + self.pos_embedding_temporal
            spatial = spatial + self.pos_embedding_spatial
        return self.temporal_transformer(temporal), self.spatial_transformer(spatial)

    def fuse(self, temporal: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        t_mean = temporal.mean(dim=1)
        if self.branch == "temporal":
            return t_mean
        if self.branch == "spatial":
            return spatial.mean(dim=1)
        if self.gate:
            s_mean = spatial.mean(dim=1)
            g = torch.sigmoid(self.gate_fc(torch.cat([t_mean, s_mean], dim=-1)))
            return g * s_mean + (1 - g) * t_mean
        if self.chn_atten:
            weights = torch.softmax(self.spatial_attn_pool(spatial), dim=1)  # (B, C, 1)
            return torch.cat([t_mean, (weights * spatial).sum(dim=1)], dim=-1)
        return torch.cat([t_mean, spatial.mean(dim=1)], dim=-1)

    def forward(self, x: torch.Tensor):
        features = self.fuse(*self.tokens(x))
        logits = self.final_layer(features)
        return (features, logits) if self.return_features else logits
