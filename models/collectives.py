"""The collectives a model family calls under data parallelism (README "Several GPUs and nodes").

Each rank trains on its slice of the step's batch; what has to be computed over the global batch goes through
these helpers: the gradients of each optimiser step (averaged over the ranks, as DistributedDataParallel
does), the EMA codebook's counts and sums (so every rank holds the same codebook), the batch statistics of
the codebook (usage, perplexity, quantization error over the global batch), the per-sample validation
means, and the statistics of batch normalisation (`SyncedBatchNorm2d`). Every helper is the identity when
torch.distributed is not initialised or has one process, so a single-process run computes exactly what it
computed before data parallelism existed.

`deferred_ema_updates` serves gradient accumulation: while it is open, the EMA codebook keeps the tokens of
every micro-batch and updates once when it closes, from all of them (on every rank), as one batch would.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn as nn


def distributed() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The sums over the ranks of tensors of one dtype and device, in one collective (the inputs unchanged
    when not distributed). CPU tensors travel through the GPU under NCCL, which reduces CUDA tensors only."""
    if not distributed():
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    device = flat.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        flat = flat.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(flat)
    flat = flat.to(device)
    return tuple(part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors))


def mean_over_ranks(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The means over the ranks of tensors of one dtype and device (the inputs unchanged when not
    distributed)."""
    if not distributed():
        return tensors
    world = dist.get_world_size()
    return tuple(total / world for total in all_reduce_sum(*tensors))


def average_gradients(parameters) -> None:
    """Replace each gradient by its mean over the ranks, in one collective per dtype: the gradient of the
    global batch's mean loss when every rank holds an equal slice (what DistributedDataParallel computes).
    Parameters without a gradient are skipped; every rank runs the same code path, so they are the same
    parameters on every rank."""
    if not distributed():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        for grad, mean in zip(grads, mean_over_ranks(*grads)):
            grad.copy_(mean)


def global_mean(values: dict[str, torch.Tensor | float], count: int) -> dict[str, float]:
    """Means over the global batch of per-sample means `values` computed on this rank's `count` samples
    (weighted by each rank's count: slices may differ by one sample)."""
    if not distributed():
        return {key: float(value) for key, value in values.items()}
    local = torch.tensor([float(v) * count for v in values.values()] + [float(count)], dtype=torch.float64)
    (total,) = all_reduce_sum(local)
    return {key: float(value / total[-1]) for key, value in zip(values, total[:-1])}


def mean_logs_over_ranks(logs: dict) -> dict:
    """A step's logs (0-dim tensors or numbers) averaged over the ranks, as float64 0-dim tensors, in one
    collective (unchanged when not distributed). The ranks hold equal slices of the batch, so a mean loss
    becomes the global batch's; statistics already computed over the global batch are kept."""
    if not distributed() or not logs:
        return logs
    device = next((v.device for v in logs.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    (mean,) = mean_over_ranks(logs_vector(logs, device))
    return dict(zip(logs, mean.unbind()))


def logs_vector(logs: dict, device: torch.device) -> torch.Tensor:
    """Log values (0-dim tensors or numbers) as one float64 vector on `device`, in the order of `logs`
    (float64 holds every float32 and bf16 value exactly, so reading it gives the numbers float(value) would)."""
    if not logs:
        return torch.zeros(0, dtype=torch.float64, device=device)
    return torch.stack([torch.as_tensor(v).detach().to(device=device, dtype=torch.float64).reshape(())
                        for v in logs.values()])


# -- the EMA codebook under gradient accumulation ----------------------------------------------------------

_deferred: dict[int, list] = {}


def defer_ema_update(quantizer: nn.Module, e: torch.Tensor, indices: torch.Tensor) -> bool:
    """Keep (e, indices) for the update at the end of `deferred_ema_updates`; False when none is open (the
    quantizer then updates now)."""
    pending = _deferred.get(id(quantizer))
    if pending is None:
        return False
    pending.append((e, indices))
    return True


@contextmanager
def deferred_ema_updates(model: nn.Module, enabled: bool = True):
    """Within the block, EMA codebook updates of `model`'s quantizers wait; at its end each updates once from
    the tokens of every micro-batch (`_ema_update` then all-reduces counts and sums over the ranks)."""
    quantizers = [m for m in model.modules() if hasattr(m, "_ema_update")] if enabled else []
    for quantizer in quantizers:
        _deferred[id(quantizer)] = []
    try:
        yield
    finally:
        pending = {id(q): _deferred.pop(id(q)) for q in quantizers}
    for quantizer in quantizers:
        parts = pending[id(quantizer)]
        if parts:
            quantizer._ema_update(torch.cat([e for e, _ in parts]), torch.cat([i for _, i in parts]))


# -- batch normalisation over the global batch -------------------------------------------------------------

class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any device and backend (gloo
    too: torch's SyncBatchNorm needs a GPU). The mean and the variance are all-reduced with autograd
    (torch.distributed.nn), so the gradients are those of the global batch as well. A single process, and
    evaluation, run BatchNorm2d itself; the state dict is BatchNorm2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = (0, 2, 3)
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device, dtype=x.dtype)
        (total,) = all_reduce_sum(count)
        mean = all_reduce(x.sum(dims)) / total
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out

