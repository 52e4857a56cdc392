"""Offline reconstruction-fidelity metrics: r-FID / r-IS for images, r-FVD for video.

"Restructuring Vector Quantization with the Rotation Trick" reports r-FID and r-IS of
*reconstructions* (FID between originals and their reconstructions, IS of the
reconstructions) and r-FVD for video.  This module computes them without ever touching
the network:

* Images go through torch-fidelity's ``inception-v3-compat`` feature extractor
  (``FeatureExtractorInceptionV3``), whose weights are always given as a local file
  (``feature_extractor_weights_path``).  torch-fidelity only downloads weights when that path
  is ``None``; we never pass ``None``, and while the extractor is built we additionally replace
  its downloader with one that raises, so a download attempt fails loudly instead of hanging.
* Videos go through a user-supplied TorchScript I3D-style extractor.

Streaming, bounded memory
-------------------------
The paper's r-FID / r-IS use 50,000 validation reconstructions (paper §5, Table 2): as float32
images that is about 40 GB per copy at 256x256.  So nothing is kept but statistics: each
batch's features are folded into running means and scatter matrices (float64, 2048 x 2048 for
FID: 32 MB whatever N) and, for IS, per-split sums of the class probabilities and of
sum_y p log p.  FID is :func:`frechet_distance` of the two Gaussians (torch-fidelity's formula); IS
uses torch-fidelity's splits (samples shuffled with ``np.random.RandomState(2020)``, then cut
into ``isc_splits`` chunks), so both equal ``torch_fidelity.calculate_metrics``'s up to float
rounding.  Statistics merge exactly across shards: on several devices each rank takes every
world-th sample and the ranks' statistics are all-gathered (:class:`Shard`).

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ENV_I3D_WEIGHTS",
    "ENV_INCEPTION_WEIGHTS",
    "INCEPTION_WEIGHTS_FILENAME",
    "FidelityResult",
    "GaussianStats",
    "I3DFeatures",
    "ImageFidelityStats",
    "InceptionFeatures",
    "InceptionScoreStats",
    "Shard",
    "VideoFidelityStats",
    "fidelity_for_run",
    "frechet_distance",
    "image_fidelity",
    "images_to_uint8",
    "resolve_weights_path",
    "video_fidelity",
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


def images_to_uint8(x: torch.Tensor, keep_device: bool = False) -> torch.Tensor:
    """(N, 3, H, W) float in [-1, 1] (clamped) or uint8 -> uint8 in [0, 255], on CPU (on x's device with
    `keep_device`)."""
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise TypeError(f"expected a float tensor in [-1, 1] or uint8, got dtype {x.dtype}")
        x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return (x if keep_device else x.cpu()).contiguous()


def _videos_to_float(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, H, W) float in [-1, 1] (clamped) or uint8 -> float32 in [-1, 1], on x's device."""
    if not torch.is_tensor(x):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [-1, 1] or uint8, got dtype {x.dtype}")
    return x.float().clamp(-1.0, 1.0)


def _check_shape(name: str, x: torch.Tensor, ndim: int, layout: str) -> None:
    if not torch.is_tensor(x) or x.dim() != ndim or x.shape[1] != 3:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape {layout} with 3 channels, got {shape}")


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


def _checked_device(device: Union[str, torch.device]) -> torch.device:
    """`device` as a torch.device: the CPU or a CUDA device this machine has."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r} (use 'cpu' or 'cuda[:i]')")
    return dev


# ----------------------------------------------------------------------------- streaming statistics


class GaussianStats:
    """Mean and scatter matrix of feature vectors, accumulated batch by batch in float64 (Chan, Golub and
    LeVeque's pairwise update), so memory does not grow with the number of samples; shards merge exactly
    the same way. The covariance is the unbiased one, as np.cov's."""

    def __init__(self, count: int = 0, mean: Optional[torch.Tensor] = None, scatter: Optional[torch.Tensor] = None):
        self.count, self.mean, self.scatter = count, mean, scatter

    def add(self, features: torch.Tensor) -> None:
        """Add (B, F) features (any float dtype, any device)."""
        x = features.detach().double()
        mean = x.mean(dim=0)
        centred = x - mean
        self._merge(x.shape[0], mean, centred.T @ centred)

    def _merge(self, count: int, mean: torch.Tensor, scatter: torch.Tensor) -> None:
        if count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.scatter = count, mean, scatter
            return
        total = self.count + count
        delta = mean.to(self.mean.device) - self.mean
        self.mean = self.mean + delta * (count / total)
        self.scatter = self.scatter + scatter.to(self.scatter.device) + torch.outer(delta, delta) * (
            self.count * count / total)
        self.count = total

    def state(self) -> dict:
        """The statistics as CPU tensors (what a gather across ranks exchanges)."""
        if self.count == 0:
            return {"count": torch.tensor(0, dtype=torch.int64)}
        return {"count": torch.tensor(self.count, dtype=torch.int64), "mean": self.mean.cpu(),
                "scatter": self.scatter.cpu()}

    @classmethod
    def merged(cls, states: list[dict]) -> GaussianStats:
        stats = cls()
        for state in states:
            stats._merge(int(state["count"]), state.get("mean"), state.get("scatter"))
        return stats

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.cpu().numpy(), (self.scatter / (self.count - 1)).cpu().numpy()


class InceptionScoreStats:
    """The Inception score, accumulated batch by batch: per split, the number of samples, the sum of the class
    probabilities p and the sum of Σ_y p log p, from which each split's mean KL(p ‖ mean p) follows exactly.

    The splits are torch-fidelity's: the `total` samples shuffled with np.random.RandomState(`rng_seed`), then
    cut into `splits` consecutive chunks, so the score equals torch-fidelity's isc on the same logits."""

    def __init__(self, total: int, splits: int, rng_seed: int = 2020):
        position = np.empty(total, dtype=np.int64)
        position[np.random.RandomState(rng_seed).permutation(total)] = np.arange(total)
        bounds = np.array([k * total // splits for k in range(splits + 1)])
        self.split_of = torch.from_numpy(np.searchsorted(bounds, position, side="right") - 1)
        self.splits = splits
        self.count = torch.zeros(splits, dtype=torch.float64)
        self.p_sum: Optional[torch.Tensor] = None
        self.p_log_p_sum = torch.zeros(splits, dtype=torch.float64)

    def add(self, logits: torch.Tensor, indices: torch.Tensor) -> None:
        """Add the (B, C) logits of the samples with global `indices` (B,)."""
        logits = logits.detach().double()
        p = logits.softmax(dim=1)
        p_log_p = (p * logits.log_softmax(dim=1)).sum(dim=1)
        split = self.split_of[indices.cpu()]
        if self.p_sum is None:
            self.p_sum = torch.zeros(self.splits, logits.shape[1], dtype=torch.float64)
        self.count.index_add_(0, split, torch.ones(len(split), dtype=torch.float64))
        self.p_sum.index_add_(0, split, p.cpu())
        self.p_log_p_sum.index_add_(0, split, p_log_p.cpu())

    def state(self) -> dict:
        state = {"count": self.count, "p_log_p_sum": self.p_log_p_sum}
        return state if self.p_sum is None else {**state, "p_sum": self.p_sum}

    @staticmethod
    def score(states: list[dict]) -> tuple[float, float]:
        """(mean, std) over the splits of exp(mean KL(p ‖ mean p)), as torch-fidelity's isc, from the
        `state()` of every shard."""
        count = sum(s["count"] for s in states)
        p_log_p_sum = sum(s["p_log_p_sum"] for s in states)
        q = sum(s["p_sum"] for s in states if "p_sum" in s) / count[:, None]
        scores = (p_log_p_sum / count - (q * q.log()).sum(dim=1)).exp().numpy()
        return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- sharding


@dataclass(frozen=True)
class Shard:
    """This process's part of an evaluation on several devices: rank `rank` of `world` takes the samples
    rank, rank + world, ...; `gather` maps this rank's statistics (a dict of CPU tensors) to the list of every
    rank's, in rank order (an all-gather, e.g. torch.distributed.all_gather_object). world 1 needs none."""

    rank: int = 0
    world: int = 1
    gather: Optional[Callable[[dict], list]] = None

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard rank {self.rank} is not in [0, {self.world})")
        if self.world > 1 and self.gather is None:
            raise ValueError(f"a shard of {self.world} ranks needs a gather function")

    def indices(self, total: int) -> list[int]:
        return list(range(self.rank, total, self.world))

    def all_states(self, state: dict) -> list[dict]:
        return [state] if self.world == 1 else list(self.gather(state))


SINGLE = Shard()


# ----------------------------------------------------------------------------- images


class InceptionFeatures:
    """torch-fidelity's 'inception-v3-compat' extractor from a local weights file: uint8 (B, 3, H, W) on its
    device -> (pool features (B, 2048), unbiased logits (B, 1008)), the layers torch-fidelity uses for FID and
    IS (it resizes to 299x299 itself)."""

    def __init__(self, path: str, device: torch.device):
        _validate_inception_weights(path)
        import torch_fidelity.feature_extractor_inceptionv3 as fe  # heavy import, only needed here

        with _forbid_torch_fidelity_downloads():
            self.model = fe.FeatureExtractorInceptionV3(INCEPTION_FEATURE_EXTRACTOR, ["2048", "logits_unbiased"],
                                                        feature_extractor_weights_path=path)
        self.model.requires_grad_(False).eval().to(device)

    @torch.no_grad()
    def __call__(self, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool, logits = self.model(images_uint8)
        return pool, logits


class ImageFidelityStats:
    """r-FID / r-IS statistics of one shard, accumulated batch by batch: Gaussian statistics of the originals'
    and the reconstructions' pool features, and the reconstructions' Inception-score sums. `total` is the
    number of reconstructions over all shards (it fixes the IS splits)."""

    def __init__(self, features: InceptionFeatures, total: int, splits: int = DEFAULT_ISC_SPLITS):
        self.features = features
        self.originals, self.reconstructions = GaussianStats(), GaussianStats()
        self.inception = InceptionScoreStats(total, min(splits, total))

    def add_originals(self, images: torch.Tensor) -> None:
        self.originals.add(self.features(images_to_uint8(images, keep_device=True))[0])

    def add_reconstructions(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        pool, logits = self.features(images_to_uint8(images, keep_device=True))
        self.reconstructions.add(pool)
        self.inception.add(logits, indices)

    def state(self) -> dict:
        return {"originals": self.originals.state(), "reconstructions": self.reconstructions.state(),
                "inception": self.inception.state()}

    def result(self, shard: Shard = SINGLE) -> tuple[float, float, float]:
        """(r-FID, r-IS mean, r-IS std) over every shard's statistics."""
        states = shard.all_states(self.state())
        return (frechet_distance_of_states(states), *InceptionScoreStats.score([s["inception"] for s in states]))


def frechet_distance_of_states(states: list[dict]) -> float:
    """The Fréchet distance between the originals' and the reconstructions' Gaussians, each merged over the
    shards' states (`GaussianStats`): r-FID on Inception features, r-FVD on I3D features."""
    originals = GaussianStats.merged([s["originals"] for s in states])
    reconstructions = GaussianStats.merged([s["reconstructions"] for s in states])
    return frechet_distance(*originals.mean_and_covariance(), *reconstructions.mean_and_covariance())


def _missing_inception(path: Optional[str], n: int) -> Optional[FidelityResult]:
    """The result saying why r-FID/r-IS cannot be computed with `path`, or None when they can."""
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
    return None


def _image_note(n_rec: int, n_orig: int, splits: int) -> str:
    import torch_fidelity

    return (f"torch-fidelity {torch_fidelity.__version__} {INCEPTION_FEATURE_EXTRACTOR} features, streamed, "
            f"N={n_rec} reconstructions vs {n_orig} originals, isc_splits={splits}")


def image_fidelity(
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    weights_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
) -> FidelityResult:
    """r-FID (originals vs reconstructions) and r-IS (of the reconstructions) with torch-fidelity's Inception.

    Args:
        originals, reconstructions: (N, 3, H, W) float tensors in [-1, 1] (values outside are
            clamped) or uint8 tensors in [0, 255].  Floats are quantised to uint8 as
            ``round((x + 1) * 127.5)``; the extractor then resizes to 299x299 internally
            (TF1-compatible bilinear).  The two sets may differ in N but normally are paired.
        weights_path: local torch-fidelity ``inception-v3-compat`` weights file; falls back to
            ``$ROTATION_HARNESS_INCEPTION_WEIGHTS``.  Missing -> all-None result with a note.
        device: "cpu" or "cuda[:i]".
        batch_size: feature-extraction batch size.

    The features are accumulated batch by batch (`ImageFidelityStats`); the numbers are those of
    ``torch_fidelity.calculate_metrics`` (fid, isc with ``samples_shuffle``, ``rng_seed=2020``) up to float
    rounding.

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
    missing = _missing_inception(path, n)
    if missing is not None:
        return missing
    if n < 2:
        return FidelityResult(
            num_samples=n,
            note=f"r-FID/r-IS not computed: need at least 2 images per set, got {n_orig} originals "
            f"and {n_rec} reconstructions",
        )
    dev = _checked_device(device)
    stats = ImageFidelityStats(InceptionFeatures(path, dev), n_rec)
    step = int(batch_size)
    for start in range(0, n_orig, step):
        stats.add_originals(originals[start: start + step].to(dev))
    for start in range(0, n_rec, step):
        indices = torch.arange(start, min(n_rec, start + step))
        stats.add_reconstructions(reconstructions[start: start + step].to(dev), indices)
    fid, is_mean, is_std = stats.result()
    return FidelityResult(r_fid=fid, r_is=is_mean, r_is_std=is_std, num_samples=n,
                          note=_image_note(n_rec, n_orig, stats.inception.splits))


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``, with the trace of the matrix
    square root taken as the sum of the square roots of the eigenvalues of ``sigma1 @ sigma2`` (as
    torch-fidelity computes it).  Those eigenvalues are real and non-negative in exact arithmetic (the
    product of two covariances is similar to a positive semi-definite matrix); rounding leaves tiny negative
    or complex ones for singular covariances (fewer samples than feature dimensions), whose complex square
    roots add only their tiny real part.  One eigenvalue problem, several times faster than
    ``scipy.linalg.sqrtm`` at the 2048 dimensions of FID.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances have bad shapes: {sigma1.shape}, {sigma2.shape} for d={mu1.shape[0]}")
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise ValueError("frechet_distance: the covariances are not finite")
    diff = mu1 - mu2
    trace_sqrt = np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)).real.sum()
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


# ----------------------------------------------------------------------------- video


def _load_i3d(path: str, device: torch.device) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.load is flagged deprecated in recent torch
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(path, map_location=device)
    model.eval()
    return model


class I3DFeatures:
    """A TorchScript I3D-style extractor (see the module docstring): videos (B, 3, T, H, W) float in [-1, 1]
    or uint8, on its device -> (B, F) features; frames are resized to 224x224 first."""

    def __init__(self, path: str, device: torch.device):
        self.model = _load_i3d(path, device)

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        v = _videos_to_float(videos)
        b, c, t, h, w = v.shape
        if (h, w) != (I3D_INPUT_SIZE, I3D_INPUT_SIZE):
            frames = v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(I3D_INPUT_SIZE, I3D_INPUT_SIZE), mode="bilinear",
                                   align_corners=False)
            v = frames.reshape(b, t, c, I3D_INPUT_SIZE, I3D_INPUT_SIZE).permute(0, 2, 1, 3, 4)
        out = self.model(v.clamp(-1.0, 1.0).contiguous())
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not torch.is_tensor(out) or out.dim() != 2 or out.shape[0] != b:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"I3D extractor must return (N, F) features, got {shape} for a batch of {b}")
        return out


class VideoFidelityStats:
    """r-FVD statistics of one shard, accumulated batch by batch: Gaussian statistics of the originals' and
    the reconstructions' I3D features."""

    def __init__(self, features: I3DFeatures):
        self.features = features
        self.originals, self.reconstructions = GaussianStats(), GaussianStats()

    def add_originals(self, videos: torch.Tensor) -> None:
        self.originals.add(self.features(videos))

    def add_reconstructions(self, videos: torch.Tensor, indices: torch.Tensor) -> None:
        self.reconstructions.add(self.features(videos))

    def state(self) -> dict:
        return {"originals": self.originals.state(), "reconstructions": self.reconstructions.state()}

    def result(self, shard: Shard = SINGLE) -> float:
        """r-FVD over every shard's statistics."""
        return frechet_distance_of_states(shard.all_states(self.state()))


def _missing_i3d(path: Optional[str], n: int) -> Optional[FidelityResult]:
    """The result saying why r-FVD cannot be computed with `path`, or None when it can."""
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
    return None


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

    Features are accumulated batch by batch into means/covariances (float64) and compared with
    :func:`frechet_distance`.  Needs N >= 2 videos per set; like FID, FVD at small N is biased upwards.
    """
    _check_shape("originals", originals, 5, "(N, 3, T, H, W)")
    _check_shape("reconstructions", reconstructions, 5, "(N, 3, T, H, W)")
    n_orig, n_rec = int(originals.shape[0]), int(reconstructions.shape[0])
    n = min(n_orig, n_rec)
    path = resolve_weights_path(i3d_path, ENV_I3D_WEIGHTS)
    missing = _missing_i3d(path, n)
    if missing is not None:
        return missing
    if n < 2:
        return FidelityResult(
            num_samples=n,
            note=f"r-FVD not computed: need at least 2 videos per set, got {n_orig} originals "
            f"and {n_rec} reconstructions",
        )
    dev = _checked_device(device)
    stats = VideoFidelityStats(I3DFeatures(path, dev))
    step = int(batch_size)
    for start in range(0, n_orig, step):
        stats.add_originals(originals[start: start + step].to(dev))
    for start in range(0, n_rec, step):
        stats.add_reconstructions(reconstructions[start: start + step].to(dev), torch.arange(start, start + step))
    return FidelityResult(
        r_fvd=stats.result(),
        num_samples=n,
        note=f"I3D TorchScript {os.path.basename(path)}, F={stats.originals.mean.shape[0]}, "
        f"N={n_rec} reconstructions vs {n_orig} originals",
    )


# ----------------------------------------------------------------------------- a run's validation set


def _stacked_batches(dataset, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """`dataset`'s items in order, stacked by `batch_size` on the CPU and moved to `device`."""
    from .data.loading import device_batches, make_loader

    loader = make_loader(dataset, num_workers=0, pin_memory=False, batch_size=batch_size)
    return device_batches(loader, device, set())


def fidelity_for_run(model, val_set, metrics_cfg, batch_size: int, device, autocast, batches=None,
                     shard: Shard = SINGLE) -> tuple[dict, str]:
    """r-FID/r-IS (images) or r-FVD (video) of a trained model's validation reconstructions, streamed: each
    batch is reconstructed and its features accumulated (`ImageFidelityStats`, `VideoFidelityStats`), so host
    memory does not grow with the size of the validation set.

    `batches(dataset, batch_size)` yields the dataset's items in order, stacked and on `device` (the trainer's
    loader: workers, pinned memory; default: stacked in this process). With a `shard`, this process takes
    its samples of the first `metrics.fidelity_samples` and the statistics of all ranks are gathered.

    Returns (metrics, note): metrics holds only numbers that were computed; the note says what was not
    and why (never a made-up value).
    """
    limit = len(val_set) if metrics_cfg.fidelity_samples is None else min(len(val_set), metrics_cfg.fidelity_samples)
    video = val_set.kind == "video"
    path = resolve_weights_path(metrics_cfg.i3d_weights if video else metrics_cfg.inception_weights,
                                ENV_I3D_WEIGHTS if video else ENV_INCEPTION_WEIGHTS)
    missing = _missing_i3d(path, limit) if video else _missing_inception(path, limit)
    if missing is None and limit < 2:
        missing = FidelityResult(num_samples=limit, note=f"{'r-FVD' if video else 'r-FID/r-IS'} not computed: "
                                 f"need at least 2 validation items, got {limit}")
    if missing is not None:
        return {}, missing.note
    device = torch.device(device)
    stats = (VideoFidelityStats(I3DFeatures(path, device)) if video
             else ImageFidelityStats(InceptionFeatures(path, device), limit))
    indices = shard.indices(limit)
    batches = batches or partial(_stacked_batches, device=device)
    done = 0
    model.eval()
    with torch.no_grad():
        for x in batches(torch.utils.data.Subset(val_set, indices), batch_size):
            with autocast():
                x_hat, _ = model(x)
            stats.add_originals(x)
            stats.add_reconstructions(x_hat.float().clamp(-1, 1), torch.tensor(indices[done: done + len(x)]))
            done += len(x)
    model.train()
    if video:
        return {"r_fvd": stats.result(shard)}, (f"I3D TorchScript {os.path.basename(path)}, streamed, N={limit} "
                                               f"validation clips and their reconstructions")
    fid, is_mean, _ = stats.result(shard)
    return {"r_fid": fid, "r_is": is_mean}, _image_note(limit, limit, stats.inception.splits)
