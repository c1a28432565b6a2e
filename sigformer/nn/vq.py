"""Vector-quantisation codebook shared by the tokenizers (TFM-Tokenizer, Du-IN, VQ tokenizer).

One implementation with the switches the reference models need:

* EMA codebook updates, either VQ-VAE-2 style (``ema="average"``: Laplace-smoothed running
  cluster sizes and sums, TFM-Tokenizer) or LaBraM style (``ema="normalized_mean"``: running
  L2-normalised cluster means, Du-IN);
* optional L2 normalisation of inputs and codes (cosine codebook);
* codebook initialisation: uniform ``U(-1/K, 1/K)``, random unit vectors, or k-means on the
  first training batch;
* dead-code restart: codes whose running usage falls below a threshold are re-seeded from the
  current batch;
* usage and perplexity reporting;
* DDP: code counts and sums are all-reduced across processes before each EMA update;
* a reference path (one-hot counting, as the releases) and a fast path (``fast=True``:
  ``bincount``/``index_add``, and on CPU the nearest-code search in cache-sized blocks) that
  give the same ids and counts (codebooks up to float summation order);
* autocast safety: distances, EMA statistics and losses are computed in float32 even inside a
  bf16/fp16 ``torch.autocast`` region, so mixed precision cannot change which code is chosen
  through a low-precision distance matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .blocks import tracing  # noqa: F401 - re-exported: the fast paths' shared check


@dataclass
class VQOutput:
    quantized: torch.Tensor  # straight-through quantised vectors, shape of the input
    indices: torch.Tensor  # code index per vector, input shape without the last axis
    loss: torch.Tensor  # beta * commitment (+ codebook term, see VectorQuantizer)
    commitment: torch.Tensor
    perplexity: torch.Tensor  # exp(entropy) of the batch's code distribution


CHUNK_ELEMENTS = 2 ** 18  # distance block of the fast CPU path (1 MB of float32)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def kmeans(x: torch.Tensor, k: int, iters: int = 10, cosine: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on ``x`` (N, D) -> centroids (k, D). With fewer
    points than clusters the centroids repeat points (plus tiny noise)."""
    n = x.shape[0]
    if n <= k:
        centroids = x[torch.randint(n, (k,), generator=generator)].clone()
        centroids += 1e-4 * torch.randn(centroids.shape, generator=generator).to(x)
    else:
        centroids = _kmeans_plus_plus(x, k, generator)
    for _ in range(iters):
        if cosine:
            centroids = F.normalize(centroids, dim=-1)
            assign = (x @ centroids.T).argmax(-1)
        else:
            assign = torch.cdist(x, centroids).argmin(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return F.normalize(centroids, dim=-1) if cosine else centroids


def _kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None
                      ) -> torch.Tensor:
    chosen = [int(torch.randint(x.shape[0], (1,), generator=generator))]
    d2 = (x - x[chosen[0]]).pow(2).sum(-1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / len(d2))
        nxt = int(torch.multinomial(probs.cpu().float(), 1, generator=generator))
        chosen.append(nxt)
        d2 = torch.minimum(d2, (x - x[nxt]).pow(2).sum(-1))
    return x[chosen].clone()


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with an EMA-updated codebook.

    Parameters
    ----------
    num_codes, dim : codebook size K and code width D.
    decay, eps : EMA decay and Laplace smoothing.
    ema : ``"average"`` (VQ-VAE-2 / TFM) or ``"normalized_mean"`` (LaBraM / Du-IN).
    l2_normalize : normalise inputs and codes to unit length (cosine codebook).
    init : ``"uniform"`` (``U(-1/K, 1/K)``), ``"unit"`` (random unit vectors) or ``"kmeans"``
        (on the first training batch, ``kmeans_iters`` iterations, cosine when normalised).
    beta : weight of the commitment term ``MSE(z, sg(q))``.
    codebook_loss_after_ste : add the codebook term ``MSE(q_st, sg(z))`` computed *after* the
        straight-through estimator ``q_st = z + sg(q - z)``, as TFM-Tokenizer's release does.
        What each setting optimises (checked with autograd in ``tests/test_vq.py``):

        * ``False``: ``loss = beta * MSE(z, sg(q))``; the encoder is pulled towards its codes
          with gradient ``2 * beta * (z - q) / numel``; the codebook moves only by EMA.
        * ``True`` (release): ``loss = MSE(q_st, sg(z)) + beta * MSE(z, sg(q))``. The value
          is ``(1 + beta) * MSE(z, q)``, but ``q_st`` carries ``z``'s gradient, so the codebook
          term's gradient on the encoder is ``2 * (q - z) / numel``: it cancels the commitment
          gradient. With the released ``beta = 1`` the VQ loss sends **no gradient at all**
          (the encoder learns only from the reconstruction through the straight-through
          estimator) and the codebook still moves only by EMA. With ``beta != 1`` the net
          encoder gradient is ``(beta - 1)`` times the commitment direction.

        Neither setting gives the codebook a gradient: it is a frozen parameter updated by EMA.
        (Before this was made faithful, ``True`` added ``MSE(q_st, z)``, whose gradient is zero:
        it changed only the logged value and optimised exactly what ``False`` optimises.)
    dead_code_threshold : re-seed codes whose running usage (EMA count) drops below this
        (0 disables restarts).
    stats_as_parameters : keep the running counts and the k-means flag as frozen
        ``nn.Parameter`` rather than buffers, as Du-IN's release does (they then appear in
        parameter totals).
    fast : count code usage with ``bincount`` and accumulate EMA sums with ``index_add``
        instead of building a ``(N, K)`` one-hot matrix (the releases' way); on CPU, find the
        nearest codes in cache-sized blocks of rows, outside autograd. Same ids and counts;
        EMA sums equal up to float summation order.
    """

    def __init__(self, num_codes: int, dim: int, *, decay: float = 0.99, eps: float = 1e-5,
                 ema: str = "average", l2_normalize: bool = False, init: str = "uniform",
                 kmeans_iters: int = 10, beta: float = 1.0,
                 codebook_loss_after_ste: bool = False, dead_code_threshold: float = 0.0,
                 stats_as_parameters: bool = False, fast: bool = False):
        super().__init__()
        if num_codes < 1:
            raise ValueError(f"a codebook needs at least one code, got num_codes={num_codes}")
        if ema not in ("average", "normalized_mean"):
            raise ValueError(f"ema must be 'average' or 'normalized_mean', got {ema!r}")
        if init not in ("uniform", "unit", "kmeans"):
            raise ValueError(f"init must be 'uniform', 'unit' or 'kmeans', got {init!r}")
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.eps, self.ema, self.l2_normalize = decay, eps, ema, l2_normalize
        self.init, self.kmeans_iters, self.beta = init, kmeans_iters, beta
        self.codebook_loss_after_ste = codebook_loss_after_ste
        self.dead_code_threshold = dead_code_threshold
        self.fast = fast
        if init == "uniform":
            codes = torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        else:
            codes = F.normalize(torch.randn(num_codes, dim), dim=-1)
        # the codebook is learned by EMA, never by gradient
        self.codebook = nn.Parameter(codes, requires_grad=False)
        counts = torch.zeros(num_codes)
        initted = torch.tensor([float(init != "kmeans")])
        if stats_as_parameters:
            self.counts = nn.Parameter(counts, requires_grad=False)
            self.initted = nn.Parameter(initted, requires_grad=False)
        else:
            self.register_buffer("counts", counts)
            self.register_buffer("initted", initted)
        if ema == "average":
            self.register_buffer("embed_sum", codes.clone())
        self.register_buffer("usage", torch.zeros(num_codes))  # assignments since reset_usage

    # --- reporting ----------------------------------------------------------------------
    def reset_usage(self) -> None:
        self.usage.zero_()

    def codebook_usage(self) -> float:
        """Fraction of codes assigned at least once since :meth:`reset_usage`."""
        return float((self.usage > 0).float().mean())

    def dead_codes(self) -> int:
        """Number of codes never assigned since :meth:`reset_usage`."""
        return int((self.usage == 0).sum())

    def usage_perplexity(self) -> float:
        """exp(entropy) of the code distribution accumulated since :meth:`reset_usage`."""
        total = self.usage.sum()
        if total == 0:
            return 0.0
        p = self.usage / total
        return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))

    # --- quantisation -------------------------------------------------------------------
    def codes(self) -> torch.Tensor:
        return self.codebook

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, self.dim)
        if self.l2_normalize:
            flat = F.normalize(flat, dim=-1)
        if self.fast and flat.device.type == "cpu" and not tracing():
            return self._nearest_in_chunks(flat).view(z.shape[:-1])
        norms = flat.pow(2).sum(-1, keepdim=True) + self.codebook.pow(2).sum(-1)[None]
        if self.fast:  # same values (x2 is exact), one (N, K) temporary fewer
            dists = norms.sub_(flat @ self.codebook.T, alpha=2)
        else:
            dists = norms - 2 * flat @ self.codebook.T
        return dists.argmin(-1).view(z.shape[:-1])

    @torch.no_grad()  # ids only: no autograd record of the (N, K) distances
    def _nearest_in_chunks(self, flat: torch.Tensor) -> torch.Tensor:
        """The fast path's :meth:`nearest` on CPU: the same distances (same operations, row by
        row), in blocks of about ``CHUNK_ELEMENTS`` so each block stays in cache; the full
        ``(N, K)`` matrix (19 MB for 576 vectors x 8192 codes) cost page faults and memory
        traffic (1.7x slower at that size, measured)."""
        code_norms = self.codebook.pow(2).sum(-1)
        flat_norms = flat.pow(2).sum(-1, keepdim=True)
        rows = max(1, CHUNK_ELEMENTS // self.num_codes)
        ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
        for start in range(0, flat.shape[0], rows):
            block = slice(start, start + rows)
            dists = (flat_norms[block] + code_norms).sub_(flat[block] @ self.codebook.T, alpha=2)
            ids[block] = dists.argmin(-1)
        return ids

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook)

    def forward(self, z: torch.Tensor) -> VQOutput:
        if z.shape[-1] != self.dim:
            raise ValueError(f"vectors to quantise must have width {self.dim}, got {z.shape[-1]}")
        # float32 distances and statistics even under autocast (see the module docstring)
        with torch.autocast(z.device.type, enabled=False):
            low_precision = z.dtype in (torch.float16, torch.bfloat16)
            return self._quantize(z.float() if low_precision else z)

    def _quantize(self, z: torch.Tensor) -> VQOutput:
        if self.l2_normalize:
            z = F.normalize(z, dim=-1)
        flat = z.reshape(-1, self.dim)
        if self.training and not bool(self.initted.item()):
            self._kmeans_init(flat.detach())
        indices = self.nearest(z)
        q = self.lookup(indices)
        flat_indices = indices.reshape(-1)
        if self.fast:
            one_hot = None
            counts = torch.bincount(flat_indices, minlength=self.num_codes).to(flat.dtype)
        else:  # reference: the releases' one-hot matrix
            one_hot = F.one_hot(flat_indices, self.num_codes).to(flat.dtype)
            counts = one_hot.sum(0)
        self.usage += counts.detach()
        if self.training:
            self._ema_update(flat.detach(), flat_indices, counts, one_hot)
        commitment = F.mse_loss(z, q.detach())
        quantized = z + (q - z).detach()  # straight-through estimator
        loss = self.beta * commitment
        if self.codebook_loss_after_ste:  # the release's codebook term (see the class doc)
            loss = loss + F.mse_loss(quantized, z.detach())
        p = counts / counts.sum().clamp(min=1)
        perplexity = torch.exp(-(p * (p + 1e-10).log()).sum())
        return VQOutput(quantized, indices, loss, commitment, perplexity)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        centroids = kmeans(flat, self.num_codes, self.kmeans_iters, cosine=self.l2_normalize)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(centroids, src=0)
        self.codebook.data.copy_(centroids)
        if self.ema == "average":
            self.embed_sum.copy_(centroids)
            self.counts.data.fill_(1.0)
        self.initted.data.fill_(1.0)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor,
                    one_hot: torch.Tensor | None) -> None:
        counts = _all_reduce(counts.clone())
        if one_hot is None:
            sums = torch.zeros_like(self.codebook).index_add_(0, indices, flat)
        else:
            sums = one_hot.T @ flat
        sums = _all_reduce(sums)
        d = self.decay
        self.counts.data.mul_(d).add_(counts, alpha=1 - d)
        if self.ema == "average":
            self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
            n = self.counts.sum()
            smoothed = (self.counts + self.eps) / (n + self.num_codes * self.eps) * n
            new = self.embed_sum / smoothed[:, None]
        else:
            used = counts > 0
            means = F.normalize(sums / counts.clamp(min=1)[:, None], dim=-1)
            target = torch.where(used[:, None], means, self.codebook)
            new = self.codebook * d + target * (1 - d)
        if self.l2_normalize:
            new = F.normalize(new, dim=-1)
        self.codebook.data.copy_(new)
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(flat)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        dead = self.counts < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or flat.shape[0] == 0:
            return
        picks = flat[torch.randint(flat.shape[0], (n_dead,), device=flat.device)]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(picks, src=0)
        self.codebook.data[dead] = picks
        self.counts.data[dead] = self.dead_code_threshold
        if self.ema == "average":
            self.embed_sum[dead] = picks * self.dead_code_threshold
