"""Offline tests for harness.fidelity (r-FID / r-IS via torch-fidelity, r-FVD via TorchScript I3D).

No real Inception / I3D weights exist here (and there is no network), so we build stand-ins:

* Inception: torch-fidelity's own ``FeatureExtractorInceptionV3`` architecture, instantiated
  with its weight loading patched out (the downloader is replaced by a function returning
  ``{}`` and ``load_state_dict`` by a no-op, so nothing can reach the network), filled with
  He-normal conv weights and identity BatchNorm statistics, and saved with
  ``torch.save(model.state_dict())`` -- exactly the format torch-fidelity's
  ``feature_extractor_weights_path`` loader expects (it re-loads it strictly).  The ``fc``
  layer is random but projected orthogonal to the mean pooled feature of a few calibration
  images, so the (bias-free) logits used by IS reflect image-to-image variation instead of
  the component shared by all images (otherwise IS is 1 + 1e-5).
* I3D: a tiny scripted 3D conv net (pool -> Conv3d -> ReLU -> global pool -> Linear).
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.fidelity import (
    ENV_I3D_WEIGHTS,
    ENV_INCEPTION_WEIGHTS,
    INCEPTION_WEIGHTS_FILENAME,
    FidelityResult,
    frechet_distance,
    image_fidelity,
    images_to_uint8,
    video_fidelity,
)

N_IMAGES = 12
IMAGE_SIZE = 32


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Any socket connection attempt in this module fails immediately (instead of hanging)."""

    def _refuse(self, *args, **kwargs):
        raise OSError(f"network access attempted in an offline test: connect{args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket.socket, "connect_ex", _refuse)
        yield


def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Random low-frequency images in [-1, 1] (more image-like than white noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _noisy(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# ----------------------------------------------------------------------------- stand-in Inception


def _build_standin_inception_state_dict(seed: int = 0) -> dict:
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # Build the architecture without any weights: the downloader returns an empty dict and
    # load_state_dict is a no-op, so the constructor touches neither network nor disk.
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), mock.patch.object(
        fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None
    ):
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.bias.zero_()
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)

        # fc (1008 x 2048): random rows made orthogonal to the mean calibration feature and
        # scaled so that logits vary by ~3 across images.
        calib = images_to_uint8(_smooth_images(6, IMAGE_SIZE, seed=1234))
        (feats,) = model(calib)
        feats = feats.double()
        mean = feats.mean(0)
        w = torch.randn(model.fc.weight.shape, generator=g, dtype=torch.float64)
        w = w - torch.outer(w @ mean, mean) / mean.dot(mean)
        spread = (feats - mean) @ w.T
        w = w * (3.0 / spread.std())
        model.fc.weight.copy_(w.float())
        model.fc.bias.zero_()
    return model.state_dict()


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_FILENAME
    torch.save(_build_standin_inception_state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def images():
    return _smooth_images(N_IMAGES, IMAGE_SIZE, seed=0)


@pytest.fixture(scope="module")
def image_results(inception_weights, images):
    """FidelityResult for noise std 0, small, large (computed once: each call is ~3 s on CPU)."""
    out = {}
    for name, std in (("same", 0.0), ("small", 0.05), ("large", 0.3)):
        recon = images if std == 0 else _noisy(images, std, seed=7)
        t0 = time.perf_counter()
        out[name] = image_fidelity(images, recon, weights_path=inception_weights)
        out[name + "_seconds"] = time.perf_counter() - t0
    return out


def test_standin_matches_torch_fidelity_format(inception_weights):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    sd = torch.load(inception_weights, map_location="cpu", weights_only=True)
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["fc.weight"].shape == (1008, 2048)
    # torch-fidelity's own (strict) loader accepts it; downloading would raise.
    with mock.patch.object(fe, "load_state_dict_from_url", side_effect=AssertionError("network")):
        fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=inception_weights)


def test_fid_of_identical_sets_is_zero(image_results):
    r = image_results["same"]
    assert isinstance(r, FidelityResult)
    assert r.r_fid is not None and abs(r.r_fid) < 1e-3
    assert r.num_samples == N_IMAGES
    assert r.r_fvd is None


def test_fid_grows_with_noise(image_results):
    same, small, large = (image_results[k].r_fid for k in ("same", "small", "large"))
    assert abs(same) < small < large
    assert large > 10 * max(small, 1e-3) or large > 1.0


def test_inception_score_finite_and_at_least_one(image_results):
    for key in ("same", "small", "large"):
        r = image_results[key]
        assert r.r_is is not None and math.isfinite(r.r_is) and r.r_is >= 1.0 - 1e-9
        assert r.r_is_std is not None and math.isfinite(r.r_is_std) and r.r_is_std >= 0
        assert "isc_splits=10" in r.note
    # Non-degenerate stand-in: the logits actually separate images.
    assert image_results["same"].r_is > 1.01


def test_uint8_input_matches_float_input(inception_weights, images, image_results):
    r = image_fidelity(images_to_uint8(images), images_to_uint8(images), weights_path=inception_weights)
    assert abs(r.r_fid) < 1e-3
    assert r.r_is == pytest.approx(image_results["same"].r_is, rel=1e-6)


def test_weights_from_environment(monkeypatch, inception_weights):
    monkeypatch.setenv(ENV_INCEPTION_WEIGHTS, inception_weights)
    x = _smooth_images(3, 16, seed=3)
    r = image_fidelity(x, x)
    assert r.r_fid is not None and abs(r.r_fid) < 1e-3
    assert "isc_splits=3" in r.note  # isc_splits = min(10, N)


def test_no_weights_gives_none_and_note(monkeypatch, images):
    monkeypatch.delenv(ENV_INCEPTION_WEIGHTS, raising=False)
    r = image_fidelity(images, images)
    assert (r.r_fid, r.r_is, r.r_is_std, r.r_fvd) == (None, None, None, None)
    assert "not computed" in r.note and ENV_INCEPTION_WEIGHTS in r.note
    assert INCEPTION_WEIGHTS_FILENAME in r.note and "inception-v3-compat" in r.note


def test_missing_weights_file_gives_none_and_names_path(monkeypatch, tmp_path, images):
    monkeypatch.delenv(ENV_INCEPTION_WEIGHTS, raising=False)
    missing = tmp_path / "nope" / "inception.pth"
    r = image_fidelity(images, images, weights_path=missing)
    assert (r.r_fid, r.r_is, r.r_is_std) == (None, None, None)
    assert str(missing) in r.note
    # also via the environment variable
    monkeypatch.setenv(ENV_INCEPTION_WEIGHTS, str(missing))
    r = image_fidelity(images, images)
    assert r.r_fid is None and str(missing) in r.note


def test_too_few_images_gives_none(inception_weights):
    x = _smooth_images(1, 16, seed=0)
    r = image_fidelity(x, x, weights_path=inception_weights)
    assert r.r_fid is None and r.r_is is None
    assert "at least 2" in r.note


def test_bad_weights_file_raises(tmp_path, images):
    bad = tmp_path / "bad.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3), "fc.weight": torch.zeros(10, 10)}, bad)
    with pytest.raises(ValueError, match="fc.weight"):
        image_fidelity(images, images, weights_path=bad)
    torch.save([1, 2, 3], bad)
    with pytest.raises(ValueError, match="state dict"):
        image_fidelity(images, images, weights_path=bad)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        image_fidelity(torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError):
        video_fidelity(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))


def test_images_to_uint8():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert images_to_uint8(x)[0, 0, 0].tolist() == [0, 0, 128, 255, 255]
    u = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(images_to_uint8(u), u)


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_closed_form_diagonal():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 2.0, size=d), rng.uniform(0.1, 2.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_identical_and_singular():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(5, 20))  # fewer samples than dims: singular covariance
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-4
    a = np.array([[2.0, 0.5], [0.5, 1.0]])
    b = np.array([[1.0, -0.3], [-0.3, 0.5]])
    # full (non-diagonal) check against an eigen-decomposition based trace of sqrtm(a b)
    tr = np.sum(np.sqrt(np.linalg.eigvals(a @ b).astype(complex)).real)
    assert frechet_distance(np.zeros(2), a, np.ones(2), b) == pytest.approx(2 + np.trace(a) + np.trace(b) - 2 * tr)


# ----------------------------------------------------------------------------- video / FVD


class _TinyI3D(nn.Module):
    """(N, 3, T, 224, 224) in [-1, 1] -> (N, 8) features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(x, kernel_size=(1, 4, 4))  # 224 -> 56
        x = F.relu(self.conv(x))
        x = F.adaptive_avg_pool3d(x, 1).flatten(1)
        return self.fc(x)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "tiny_i3d.pt"
    with warnings.catch_warnings():  # torch.jit.* emit FutureWarnings in recent torch
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_TinyI3D().eval()), str(path))
    return str(path)


@pytest.fixture(scope="module")
def videos():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(16, 3, 4, 4, 4, generator=g) * 2 - 1
    return F.interpolate(x, size=(4, 16, 16), mode="trilinear", align_corners=False)  # (N, 3, T, H, W)


def test_fvd_zero_for_identical_and_grows_with_noise(i3d_path, videos):
    same = video_fidelity(videos, videos, i3d_path=i3d_path)
    small = video_fidelity(videos, _noisy(videos, 0.05, seed=1), i3d_path=i3d_path)
    large = video_fidelity(videos, _noisy(videos, 0.5, seed=1), i3d_path=i3d_path)
    assert same.r_fvd is not None and abs(same.r_fvd) < 1e-6
    assert abs(same.r_fvd) < small.r_fvd < large.r_fvd
    assert same.r_fid is None and same.r_is is None and same.num_samples == 16


def test_fvd_from_environment_and_uint8(monkeypatch, i3d_path, videos):
    monkeypatch.setenv(ENV_I3D_WEIGHTS, i3d_path)
    u = ((videos + 1) * 127.5).round().to(torch.uint8)
    r = video_fidelity(u, u)
    assert r.r_fvd is not None and abs(r.r_fvd) < 1e-6


def test_fvd_without_extractor(monkeypatch, tmp_path, videos):
    monkeypatch.delenv(ENV_I3D_WEIGHTS, raising=False)
    r = video_fidelity(videos, videos)
    assert r.r_fvd is None and "not computed" in r.note and ENV_I3D_WEIGHTS in r.note
    missing = tmp_path / "i3d_missing.pt"
    r = video_fidelity(videos, videos, i3d_path=missing)
    assert r.r_fvd is None and str(missing) in r.note


def test_fvd_too_few_videos(i3d_path, videos):
    r = video_fidelity(videos[:1], videos[:1], i3d_path=i3d_path)
    assert r.r_fvd is None and "at least 2" in r.note


def test_download_guard_refuses_instead_of_reaching_network():
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from harness.fidelity import _forbid_torch_fidelity_downloads

    original = fe.load_state_dict_from_url
    with _forbid_torch_fidelity_downloads():
        with pytest.raises(RuntimeError, match="downloads are disabled"):
            fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])  # no path -> would download
    assert fe.load_state_dict_from_url is original


# ----------------------------------------------------------------------------- streaming, sharding


def _features(n: int, dims: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dims, dims, generator=g) / math.sqrt(dims)
    return torch.randn(n, dims, generator=g) @ mixing + shift


def test_streaming_statistics_equal_torch_fidelity_in_memory():
    """Features folded in batch by batch (uneven batches) give torch-fidelity's FID statistics and its IS
    (same shuffled splits) computed on all features at once."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric

    from harness.fidelity import GaussianStats, InceptionScoreStats

    n = 203
    pool_a, pool_b = _features(n, 48, seed=1), _features(n, 48, seed=2, shift=0.3)
    logits = _features(n, 20, seed=3) * 2
    stats_a, stats_b, inception = GaussianStats(), GaussianStats(), InceptionScoreStats(n, 10)
    for start, stop in ((0, 1), (1, 60), (60, 61), (61, 203)):
        stats_a.add(pool_a[start:stop])
        stats_b.add(pool_b[start:stop])
        inception.add(logits[start:stop], torch.arange(start, stop))
    reference_a, reference_b = fid_features_to_statistics(pool_a), fid_features_to_statistics(pool_b)
    mean_a, cov_a = stats_a.mean_and_covariance()
    np.testing.assert_allclose(mean_a, reference_a["mu"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov_a, reference_a["sigma"], rtol=1e-9, atol=1e-12)
    fid = frechet_distance(mean_a, cov_a, *stats_b.mean_and_covariance())
    expected_fid = fid_statistics_to_metric(reference_a, reference_b, verbose=False)["frechet_inception_distance"]
    assert fid == pytest.approx(expected_fid, rel=1e-6)
    expected_is = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    mean, std = InceptionScoreStats.score([inception.state()])
    assert mean == pytest.approx(expected_is["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(expected_is["inception_score_std"], rel=1e-8)


def test_streaming_image_fidelity_equals_torch_fidelity(inception_weights, images, image_results):
    """With the stand-in Inception: our streamed r-FID / r-IS are torch_fidelity.calculate_metrics's with
    everything in memory (fid, isc, samples_shuffle, rng_seed 2020)."""
    import torch_fidelity

    reconstructions = _noisy(images, 0.05, seed=7)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = images_to_uint8(x)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    metrics = torch_fidelity.calculate_metrics(
        input1=Images(reconstructions), input2=Images(images), fid=True, isc=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=inception_weights,
        isc_splits=10, cuda=False, batch_size=5, cache=False, save_cpu_ram=True, samples_shuffle=True,
        rng_seed=2020, verbose=False)
    streamed = image_results["small"]
    assert streamed.r_fid == pytest.approx(metrics["frechet_inception_distance"], rel=1e-4, abs=1e-6)
    assert streamed.r_is == pytest.approx(metrics["inception_score_mean"], rel=1e-6)
    assert streamed.r_is_std == pytest.approx(metrics["inception_score_std"], rel=1e-4, abs=1e-9)


class _ProjectionFeatures:
    """A cheap stand-in for InceptionFeatures (same interface): fixed random projections of 8x8 pooled uint8
    images as 'pool features' (32) and 'logits' (10)."""

    def __init__(self, path, device):
        g = torch.Generator().manual_seed(0)
        self.pool, self.logits = torch.randn(3 * 64, 32, generator=g), torch.randn(3 * 64, 10, generator=g)

    def __call__(self, images_uint8):
        x = F.adaptive_avg_pool2d(images_uint8.float() / 255, 8).flatten(1)
        return x @ self.pool, 4 * x @ self.logits


class _Blur(nn.Module):
    """A 'model' whose reconstruction is a blurred image, returned as (x_hat, aux) like the families."""

    def forward(self, x):
        return F.avg_pool2d(x, 3, stride=1, padding=1), None


class _Images(torch.utils.data.Dataset):
    kind = "image"

    def __init__(self, n):
        self.x = _smooth_images(n, 16, seed=4) + 0.1 * torch.randn(n, 3, 16, 16, generator=torch.Generator()
                                                                       .manual_seed(5))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].clamp(-1, 1)


def _run_fidelity(tmp_path, batch_size=7, shard=None, samples=None):
    from harness.config import MetricsConfig
    from harness.fidelity import SINGLE, fidelity_for_run

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    config = MetricsConfig(fidelity=True, inception_weights=str(weights), fidelity_samples=samples)
    return fidelity_for_run(_Blur(), _Images(45), config, batch_size, "cpu", contextlib.nullcontext,
                            shard=shard or SINGLE)


def test_fidelity_for_run_is_the_same_whatever_the_batches_and_shards(tmp_path, monkeypatch):
    """Streaming: the batch size does not change the numbers; a 2-rank evaluation (faked in one process:
    rank 1 first, then rank 0, whose gather returns both ranks' statistics) equals the single-process one."""
    from harness import fidelity

    monkeypatch.setattr(fidelity, "InceptionFeatures", _ProjectionFeatures)
    single, note = _run_fidelity(tmp_path)
    assert set(single) == {"r_fid", "r_is"} and single["r_fid"] > 0 and single["r_is"] > 1
    assert "N=45" in note
    other_batches, _ = _run_fidelity(tmp_path, batch_size=45)
    assert other_batches == pytest.approx(single, rel=1e-6)  # float32 features: rounding differs by batch

    states: dict[int, dict] = {}

    def gather_for(rank):
        def gather(state):
            states[rank] = state
            return [states[r] for r in sorted(states)]
        return gather

    _run_fidelity(tmp_path, shard=fidelity.Shard(1, 2, gather_for(1)))
    sharded, _ = _run_fidelity(tmp_path, shard=fidelity.Shard(0, 2, gather_for(0)))
    assert sharded == pytest.approx(single, rel=1e-6)
    assert int(states[0]["originals"]["count"]) == 23 and int(states[1]["originals"]["count"]) == 22
    capped, note = _run_fidelity(tmp_path, samples=20)
    assert "N=20" in note and capped["r_fid"] != pytest.approx(single["r_fid"])


def test_shards_need_a_gather_and_a_valid_rank():
    from harness.fidelity import Shard

    with pytest.raises(ValueError, match="gather"):
        Shard(0, 2)
    with pytest.raises(ValueError, match="rank 2"):
        Shard(2, 2, gather=list)
