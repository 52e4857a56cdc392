"""The VQ-VAE family (paper §5.1, Table 1, Table 8): taming CNN encoder/decoder, MSE objective, EMA codebook."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import QuantizerParams, VQAutoencoder
from .registry import register_family
from .taming_cnn import Decoder, Encoder, cnn_kwargs, needs_double_backward


@dataclass
class VQVAEParams(QuantizerParams):
    resolution: int = 32
    in_channels: int = 3
    channels: int = 32
    channel_mult: list = field(default_factory=lambda: [1, 2])
    num_res_blocks: int = 1
    attn_resolutions: list = field(default_factory=list)
    dropout: float = 0.0


def _table8(lookup: str, codes: int, latent_dim: int, channel_mult: list, lr: float, wd: float, epochs: int):
    return {
        "model": {"resolution": 256, "channels": 128, "channel_mult": channel_mult, "num_res_blocks": 2,
                  "attn_resolutions": [16], "num_codes": codes, "latent_dim": latent_dim, "lookup": lookup,
                  "codebook_learning": "ema", "ema_decay": 0.8, "beta": 1.0},
        "training": {"lr": lr, "weight_decay": wd, "betas": [0.9, 0.99], "batch_size": 256, "epochs": epochs,
                     "warmup_steps": 3000, "schedule": "cosine"},
        "source": "paper Table 8; latent 16×16×32 as in the authors' code" if latent_dim == 32
        else "paper Table 8",
    }


PRESETS = {
    "cpu": {
        "model": {"resolution": 32, "channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                  "attn_resolutions": [], "num_codes": 256, "latent_dim": 16, "lookup": "euclidean",
                  "codebook_learning": "ema", "ema_decay": 0.8, "beta": 1.0},
        "training": {"lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.99], "batch_size": 64,
                     "warmup_steps": 50, "schedule": "cosine"},
        "source": "small CPU setting of this harness (32×32 patches → 8×8×16 latents, K=256), not the paper",
    },
    "paper_cosine_1024x32": _table8("cosine", 1024, 32, [1, 1, 2, 2, 4], 1e-4, 1e-4, 25),
    "paper_cosine_8192x3": _table8("cosine", 8192, 3, [1, 2, 4], 1e-4, 1e-4, 20),
    "paper_euclidean_1024x32": _table8("euclidean", 1024, 32, [1, 1, 2, 2, 4], 5e-5, 0.0, 25),
    "paper_euclidean_8192x3": _table8("euclidean", 8192, 3, [1, 2, 4], 5e-5, 0.0, 20),
}


@register_family
class VQVAE(VQAutoencoder):
    """Taming-style CNN VQ-VAE trained with MSE (van den Oord et al. 2017; paper §5.1)."""

    family_name = "vqvae"
    channels_last = True
    Params = VQVAEParams
    presets = PRESETS

    def __init__(self, params: VQVAEParams, estimator):
        common = cnn_kwargs(params, double_backward=needs_double_backward(estimator))
        super().__init__(params, estimator, Encoder(params.in_channels, **common),
                         Decoder(params.in_channels, **common))

    @classmethod
    def check_params(cls, params) -> list[str]:
        problems = super().check_params(params)
        factor = 2 ** (len(params.channel_mult) - 1)
        if params.resolution % factor:
            problems.append(f"resolution {params.resolution} is not divisible by 2^(len(channel_mult)-1) = {factor}")
        return problems
