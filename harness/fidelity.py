"""Offline reconstruction-fidelity metrics: r-FID / r-IS for images, r-FVD for video.

"Restructuring Vector Quantization with the Rotation Trick" reports r-FID and r-IS of
*reconstructions* (FID between originals and their reconstructions, IS of the
reconstructions) and r-FVD for video.  This module computes them without ever touching
the network:

* Images go through torch-fidelity's own API (``torch_fidelity.calculate_metrics``) with
  the ``inception-v3-compat`` feature extractor, whose weights are always given as a local
  file (``feature_extractor_weights_path``).  torch-fidelity only downloads weights when
  that path is ``None``; we never pass ``None``, and while it runs we additionally replace
  its downloader with one that raises, so a download attempt fails loudly instead of
  hanging.  Features are not cached to disk (``cache=False``).
* Videos go through a user-supplied TorchScript I3D-style extractor and
  :func:`frechet_distance` (``scipy.linalg.sqrtm``).

When the weights are not available the functions return ``None`` metrics with a
``note`` explaining why -- never a made-up number.

Inception weights file
----------------------
torch-fidelity's ``inception-v3-compat`` extractor (``FeatureExtractorInceptionV3``)
loads the file with ``torch.load(path, weights_only=False)`` (no ``map_location``) and
then ``self.load_state_dict(state_dict)`` (strict).  So the file must be a plain
``torch.save``-d state dict (a dict / OrderedDict of CPU tensors) of that module: 566
entries, e.g. ``Conv2d_1a_3x3.conv.weight`` (32, 3, 3, 3), ``Conv2d_1a_3x3.bn.{weight,
bias,running_mean,running_var,num_batches_tracked}``, ... ``Mixed_7c.branch_pool.*``,
``fc.weight`` (1008, 2048), ``fc.bias`` (1008,) -- 23.9M float32 parameters, about
96 MB.  The official file is torch-fidelity's release asset
``weights-inception-2015-12-05-6726825d.pth`` (the TF 2015-12-05 Inception graph
converted to PyTorch; the same file torch.hub caches under
``$TORCH_HOME/hub/checkpoints/``).  Before handing the path to torch-fidelity we open it
once with ``weights_only=True`` (which refuses arbitrary pickled code, which torch-fidelity's
own ``weights_only=False`` load would execute) and check the two anchor tensors above.

I3D (FVD) extractor contract
----------------------------
A TorchScript file (``torch.jit.save``) whose module maps a float32 tensor of shape
``(N, 3, T, 224, 224)`` with values in ``[-1, 1]`` to features ``(N, F)`` (for the usual
I3D, the 400-way logits or the 1024-d pooled features).  Videos are resized frame-wise to
224x224 (bilinear, ``align_corners=False``) before the call; the number of frames ``T`` is
passed through unchanged.  (The StyleGAN-V ``i3d_torchscript.pt`` takes extra keyword
arguments, ``rescale/resize/return_features``; wrap it in a small scripted module that
calls it with ``rescale=False, resize=False, return_features=True`` to meet this contract.)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

__all__ = [
    "ENV_INCEPTION_WEIGHTS",
    "ENV_I3D_WEIGHTS",
    "INCEPTION_WEIGHTS_FILENAME",
    "FidelityResult",
    "image_fidelity",
    "video_fidelity",
    "frechet_distance",
    "images_to_uint8",
    "resolve_weights_path",
]

ENV_INCEPTION_WEIGHTS = "ROTATION_HARNESS_INCEPTION_WEIGHTS"
ENV_I3D_WEIGHTS = "ROTATION_HARNESS_I3D_WEIGHTS"
# Name of torch-fidelity's release asset for the 'inception-v3-compat' extractor
# (https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/<this name>).
INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FEATURE_EXTRACTOR = "inception-v3-compat"
I3D_INPUT_SIZE = 224
DEFAULT_ISC_SPLITS = 10

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class FidelityResult:
    """Reconstruction fidelity metrics; ``None`` means "not computed" (see ``note``)."""

    r_fid: Optional[float] = None
    r_is: Optional[float] = None
    r_is_std: Optional[float] = None
    r_fvd: Optional[float] = None
    num_samples: Optional[int] = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- helpers


def resolve_weights_path(path: Optional[PathLike], env_var: str) -> Optional[str]:
    """The explicit ``path`` if given (non-empty), else ``$env_var`` if set (non-empty), else None."""
    if path is not None and str(path) != "":
        return os.path.expanduser(os.fspath(path))
    env = os.environ.get(env_var, "")
    if env.strip():
        return os.path.expanduser(env.strip())
    return None


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [-1, 1] (clamped) or uint8 -> uint8 in [0, 255], on CPU."""
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.dtype == torch.uint8:
        return x.cpu().contiguous()
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [-1, 1] or uint8, got dtype {x.dtype}")
    x = x.float().clamp(-1.0, 1.0)
    return ((x + 1.0) * 127.5).round().to(torch.uint8).cpu().contiguous()


def _videos_to_float(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) float in [-1, 1] (clamped) or uint8 -> float32 in [-1, 1], on CPU."""
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0).cpu()
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [-1, 1] or uint8, got dtype {x.dtype}")
    return x.float().clamp(-1.0, 1.0).cpu()


def _check_shape(name: str, x: torch.Tensor, ndim: int, layout: str) -> None:
    if not torch.is_tensor(x) or x.dim() != ndim or x.shape[1] != 3:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape {layout} with 3 channels, got {shape}")


class _UInt8ImageDataset(torch.utils.data.Dataset):
    """Yields uint8 (3, H, W) tensors, the input format torch-fidelity expects."""

    def __init__(self, images_uint8: torch.Tensor):
        self.images = images_uint8

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


@contextlib.contextmanager
def _forbid_torch_fidelity_downloads():
    """Make any weight download inside torch-fidelity raise instead of reaching the network."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe_inception

    def _refuse(url, *args, **kwargs):
        raise RuntimeError(
            f"torch-fidelity tried to download {url}; downloads are disabled in this harness "
            f"(pass a local weights file)"
        )

    saved = fe_inception.load_state_dict_from_url
    fe_inception.load_state_dict_from_url = _refuse
    try:
        yield
    finally:
        fe_inception.load_state_dict_from_url = saved


def _validate_inception_weights(path: str) -> None:
    """Open the file safely (weights_only=True) and check it looks like the expected state dict."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"Inception weights file {path!r} could not be loaded as a plain state dict "
            f"(torch.load(weights_only=True)): {exc}"
        ) from exc
    if not isinstance(sd, Mapping):
        raise ValueError(f"Inception weights file {path!r} holds a {type(sd).__name__}, expected a state dict")
    expected = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "fc.weight": (1008, 2048)}
    for key, shape in expected.items():
        t = sd.get(key)
        if not torch.is_tensor(t) or tuple(t.shape) != shape:
            got = tuple(t.shape) if torch.is_tensor(t) else t
            raise ValueError(
                f"Inception weights file {path!r} is not a torch-fidelity '{INCEPTION_FEATURE_EXTRACTOR}' "
                f"state dict: {key} should be {shape}, got {got}"
            )


def _cuda_flag_and_context(device: Union[str, torch.device]):
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} requested but CUDA is not available")
        # torch-fidelity only takes cuda=True/False and uses the current CUDA device.
        ctx = torch.cuda.device(dev.index) if dev.index is not None else contextlib.nullcontext()
        return True, ctx
    if dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (use 'cpu' or 'cuda[:i]')")
    return False, contextlib.nullcontext()


# ----------------------------------------------------------------------------- images


def image_fidelity(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    weights_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
) -> FidelityResult:
    """r-FID (originals vs reconstructions) and r-IS (of the reconstructions) via torch-fidelity.

    Args:
        originals, reconstructions: (N, 3, H, W) float tensors in [-1, 1] (values outside are
            clamped) or uint8 tensors in [0, 255].  Floats are quantised to uint8 as
            ``round((x + 1) * 127.5)``; torch-fidelity then resizes to 299x299 internally
            (TF1-compatible bilinear).  The two sets may differ in N but normally are paired.
        weights_path: local torch-fidelity ``inception-v3-compat`` weights file; falls back to
            ``$ROTATION_HARNESS_INCEPTION_WEIGHTS``.  Missing -> all-None result with a note.
        device: "cpu" or "cuda[:i]".
        batch_size: feature-extraction batch size.

    Notes:
        * IS uses ``isc_splits = min(10, N_reconstructions)`` so that small N works (10 is the
          standard for 50k samples); with few samples per split IS is strongly biased
          towards 1 (a split of one image scores exactly 1), so small-N values are only
          comparable with each other at the same N.
        * FID needs N >= 2 in both sets (a covariance); with fewer, everything is None.
          FID with N well below the 2048 feature dims is biased upwards (rank-deficient
          covariances); compare runs only at the same N.
    """
    _check_shape("originals", originals, 4, "(N, 3, H, W)")
    _check_shape("reconstructions", reconstructions, 4, "(N, 3, H, W)")
    n_orig, n_rec = int(originals.shape[0]), int(reconstructions.shape[0])
    n = min(n_orig, n_rec)

    path = resolve_weights_path(weights_path, ENV_INCEPTION_WEIGHTS)
    if path is None:
        return FidelityResult(
            num_samples=n,
            note=(
                f"r-FID/r-IS not computed: no Inception weights (set {ENV_INCEPTION_WEIGHTS} or "
                f"metrics.inception_weights); expected the torch-fidelity '{INCEPTION_FEATURE_EXTRACTOR}' "
                f"weights file {INCEPTION_WEIGHTS_FILENAME}"
            ),
        )
    if not os.path.isfile(path):
        return FidelityResult(
            num_samples=n,
            note=(
                f"r-FID/r-IS not computed: Inception weights file not found: {path} (expected the "
                f"torch-fidelity '{INCEPTION_FEATURE_EXTRACTOR}' weights file {INCEPTION_WEIGHTS_FILENAME})"
            ),
        )
    if n < 2:
        return FidelityResult(
            num_samples=n,
            note=f"r-FID/r-IS not computed: need at least 2 images per set, got {n_orig} originals "
            f"and {n_rec} reconstructions",
        )

    _validate_inception_weights(path)
    cuda, cuda_ctx = _cuda_flag_and_context(device)
    isc_splits = min(DEFAULT_ISC_SPLITS, n_rec)

    import torch_fidelity  # imported lazily: heavy import, and only needed here

    with _forbid_torch_fidelity_downloads(), cuda_ctx:
        metrics = torch_fidelity.calculate_metrics(
            # IS is computed on input1, so the reconstructions go there; FID is symmetric.
            input1=_UInt8ImageDataset(images_to_uint8(reconstructions)),
            input2=_UInt8ImageDataset(images_to_uint8(originals)),
            fid=True,
            isc=True,
            kid=False,
            prc=False,
            ppl=False,
            feature_extractor=INCEPTION_FEATURE_EXTRACTOR,
            feature_extractor_weights_path=path,
            isc_splits=isc_splits,
            cuda=cuda,
            batch_size=int(batch_size),
            cache=False,  # never read/write $TORCH_HOME/fidelity_cache
            save_cpu_ram=True,  # DataLoader num_workers=0: tensors are already in memory
            datasets_download=False,
            samples_shuffle=True,
            rng_seed=2020,
            verbose=False,
        )

    return FidelityResult(
        r_fid=float(metrics[torch_fidelity.KEY_METRIC_FID]),
        r_is=float(metrics[torch_fidelity.KEY_METRIC_ISC_MEAN]),
        r_is_std=float(metrics[torch_fidelity.KEY_METRIC_ISC_STD]),
        num_samples=n,
        note=f"torch-fidelity {torch_fidelity.__version__}, {INCEPTION_FEATURE_EXTRACTOR}, "
        f"N={n_rec} reconstructions vs {n_orig} originals, isc_splits={isc_splits}",
    )


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``.  Standard
    stabilisation (as in pytorch-fid / TTUR): if ``sqrtm`` of the product is not finite, or
    has a non-negligible imaginary part (typical for singular covariances, e.g. fewer
    samples than feature dimensions), retry with ``eps * I`` added to both covariances;
    then drop the (tiny) imaginary part.  Raises ValueError if a large imaginary
    component remains.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances have bad shapes: {sigma1.shape}, {sigma2.shape} for d={mu1.shape[0]}")

    def _imag_ok(m: np.ndarray) -> bool:
        return not np.iscomplexobj(m) or np.allclose(np.diagonal(m).imag, 0, atol=1e-3)

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all() or not _imag_ok(covmean):
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not _imag_ok(covmean):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"frechet_distance: imaginary component {m} in sqrtm(sigma1 @ sigma2)")
        covmean = covmean.real
    if not np.isfinite(covmean).all():
        raise ValueError("frechet_distance: sqrtm(sigma1 @ sigma2) is not finite")
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _gaussian_stats(features: np.ndarray):
    return features.mean(axis=0), np.cov(features, rowvar=False)


# ----------------------------------------------------------------------------- video


def _load_i3d(path: str, device: torch.device) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.load is flagged deprecated in recent torch
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(path, map_location=device)
    model.eval()
    return model


@torch.no_grad()
def _i3d_features(model, videos: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    feats = []
    for start in range(0, videos.shape[0], batch_size):
        v = videos[start : start + batch_size].to(device)  # (B, 3, T, H, W) float in [-1, 1]
        b, c, t, h, w = v.shape
        if (h, w) != (I3D_INPUT_SIZE, I3D_INPUT_SIZE):
            frames = v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(I3D_INPUT_SIZE, I3D_INPUT_SIZE), mode="bilinear", align_corners=False)
            v = frames.reshape(b, t, c, I3D_INPUT_SIZE, I3D_INPUT_SIZE).permute(0, 2, 1, 3, 4)
        v = v.clamp(-1.0, 1.0).contiguous()
        out = model(v)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != b:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"I3D extractor must return (N, F) features, got {shape} for a batch of {b}")
        feats.append(out.detach().double().cpu())
    return torch.cat(feats, dim=0).numpy()


def video_fidelity(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    i3d_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
) -> FidelityResult:
    """r-FVD between original and reconstructed videos with a TorchScript I3D-style extractor.

    Args:
        originals, reconstructions: (N, 3, T, H, W) float in [-1, 1] (clamped) or uint8.
        i3d_path: TorchScript file (see module docstring for the contract); falls back to
            ``$ROTATION_HARNESS_I3D_WEIGHTS``.  Missing -> r_fvd None with a note.
        device: where the extractor runs.
        batch_size: videos per extractor call.

    Features are compared with :func:`frechet_distance` on their means/covariances (float64).
    Needs N >= 2 videos per set; like FID, FVD at small N is biased upwards.
    """
    _check_shape("originals", originals, 5, "(N, 3, T, H, W)")
    _check_shape("reconstructions", reconstructions, 5, "(N, 3, T, H, W)")
    n_orig, n_rec = int(originals.shape[0]), int(reconstructions.shape[0])
    n = min(n_orig, n_rec)

    path = resolve_weights_path(i3d_path, ENV_I3D_WEIGHTS)
    if path is None:
        return FidelityResult(
            num_samples=n,
            note=(
                f"r-FVD not computed: no I3D feature extractor (set {ENV_I3D_WEIGHTS} or metrics.i3d_weights); "
                f"expected a TorchScript module mapping (N, 3, T, {I3D_INPUT_SIZE}, {I3D_INPUT_SIZE}) "
                f"in [-1, 1] to (N, F) features"
            ),
        )
    if not os.path.isfile(path):
        return FidelityResult(num_samples=n, note=f"r-FVD not computed: I3D TorchScript file not found: {path}")
    if n < 2:
        return FidelityResult(
            num_samples=n,
            note=f"r-FVD not computed: need at least 2 videos per set, got {n_orig} originals "
            f"and {n_rec} reconstructions",
        )

    dev = torch.device(device)
    model = _load_i3d(path, dev)
    f_orig = _i3d_features(model, _videos_to_float(originals), dev, int(batch_size))
    f_rec = _i3d_features(model, _videos_to_float(reconstructions), dev, int(batch_size))
    mu1, s1 = _gaussian_stats(f_orig)
    mu2, s2 = _gaussian_stats(f_rec)
    fvd = frechet_distance(mu1, s1, mu2, s2)
    return FidelityResult(
        r_fvd=fvd,
        num_samples=n,
        note=f"I3D TorchScript {os.path.basename(path)}, F={f_orig.shape[1]}, "
        f"N={n_rec} reconstructions vs {n_orig} originals",
    )


def fidelity_for_run(model, val_set, metrics_cfg, batch_size: int, device, autocast) -> tuple[dict, str]:
    """r-FID/r-IS (images) or r-FVD (video) of a trained model's validation reconstructions.

    Returns (metrics, note): metrics holds only numbers that were computed; the note says what was not
    and why (never a made-up value).
    """
    limit = len(val_set) if metrics_cfg.fidelity_samples is None else min(len(val_set), metrics_cfg.fidelity_samples)
    originals, reconstructions = [], []
    model.eval()
    with torch.no_grad(), autocast():
        for start in range(0, limit, batch_size):
            x = torch.stack([val_set[i] for i in range(start, min(limit, start + batch_size))]).to(device)
            x_hat, _ = model(x)
            originals.append(x.float().cpu())
            reconstructions.append(x_hat.float().clamp(-1, 1).cpu())
    model.train()
    originals_t, reconstructions_t = torch.cat(originals), torch.cat(reconstructions)
    if originals_t.ndim == 5:
        result = video_fidelity(originals_t, reconstructions_t, metrics_cfg.i3d_weights, str(device))
        values = {"r_fvd": result.r_fvd}
    else:
        result = image_fidelity(originals_t, reconstructions_t, metrics_cfg.inception_weights, str(device))
        values = {"r_fid": result.r_fid, "r_is": result.r_is}
    return {k: v for k, v in values.items() if v is not None}, result.note or "computed"
