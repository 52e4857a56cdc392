"""Model families (encoder + quantizer + decoder + objective), the quantizer, and synthetic problems."""
from . import synthetic, timesformer_vqgan, vit_vqgan, vqgan, vqvae  # noqa: F401  (registers the families)
from .base import ModelFamily, StepContext, VQAutoencoder
from .quantizer import QuantizerOutput, VectorQuantizer
from .registry import build_model, family_names, get_family, register_family

__all__ = ["ModelFamily", "QuantizerOutput", "StepContext", "VQAutoencoder", "VectorQuantizer", "build_model",
           "family_names", "get_family", "register_family"]
