"""Data parallelism of one run over several processes (README "Several GPUs and nodes").

A run with `training.world_size: N` on one machine starts N processes (`launch_local`: one per GPU, or N CPU
processes); a SLURM job with several tasks (slurm.gpus_per_node × slurm.nodes) runs one process per task, each
joining the process group from the environment submitit provides (`init_from_slurm`,
submitit.helpers.TorchDistributedEnvironment). NCCL connects GPUs, gloo CPUs; a second, gloo, group carries
the small control messages (the stop flag, rank 0's decision to train), so agreeing on them never waits for
a GPU.

Each rank takes its own slice of the step's (seed, step) batch (`rank_slice`), so a run's data do not depend
on how many processes run it. The model side (gradients, EMA codebook, batch statistics) is in
models/collectives.py. Rank 0 alone writes the record, the history and the checkpoints.
"""
from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: How long a rank waits for the others in one collective before it fails (a rank that died, a hung node).
TIMEOUT = timedelta(minutes=30)

_control: dict = {}  # "group": the gloo group of the control messages


@dataclass(frozen=True)
class Place:
    """This process's place in the run: its rank, the number of ranks, its rank on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run's files."""
        return self.rank == 0


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def place() -> Place:
    """This process's place (rank 0 of 1 when no process group is initialised)."""
    if not initialized():
        return Place()
    return Place(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def backend_for(device_type: str) -> str:
    """NCCL for GPUs, gloo for CPUs."""
    return "nccl" if device_type == "cuda" else "gloo"


def device_type_of(name: str) -> str:
    """The device type of `training.device` on this machine ('auto' is CUDA when there is a GPU)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """A rank's device: its own GPU (local rank modulo the GPUs it sees, which is one GPU when SLURM binds one
    to each task), the CPU as it is."""
    if device.type != "cuda" or not initialized():
        return device
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def init_process_group(backend: str, init_method: str, rank: int, world: int) -> None:
    """Join the run's process group, and make the gloo control group."""
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=TIMEOUT)
    _control["group"] = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend != "gloo" else dist.group.WORLD


def init_from_slurm(device_type: str) -> Place:
    """Join the process group of this SLURM job's tasks (one process per task, G·M of them), from the
    environment submitit provides; a job of one task stays a single process."""
    import submitit

    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or initialized():
        return place()
    environment = submitit.helpers.TorchDistributedEnvironment()
    if environment.world_size > 1:
        environment.export(set_cuda_visible_devices=False, overwrite=True)
        init_process_group(backend_for(device_type), "env://", environment.rank, environment.world_size)
        logger.info("rank %d of %d (local rank %d), master %s:%d", environment.rank, environment.world_size,
                    environment.local_rank, environment.master_addr, environment.master_port)
    return place()


def close() -> None:
    """Leave the process group (a no-op outside one)."""
    if initialized():
        dist.destroy_process_group()
    _control.clear()


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (every rank calls it at the same point; `flag` as it is when not
    distributed): how a stop requested on one rank (SLURM's USR2) stops every rank at the same step."""
    if not initialized() or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control["group"])
    return bool(value.item())


def share(value=None):
    """Rank 0's `value`, on every rank (every rank calls it; `value` itself when not distributed)."""
    if not initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control["group"])
    return box[0]


def gather(value) -> list:
    """Every rank's `value`, in rank order, on every rank (every rank calls it; [value] when not distributed):
    how the ranks' shards of the fidelity statistics meet (harness/fidelity.py `Shard`)."""
    if not initialized() or dist.get_world_size() == 1:
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value, group=_control["group"])
    return values


def rank_slice(size: int, rank: int, world: int) -> slice:
    """Rank `rank`'s share of `size` items in order: contiguous, sizes differing by at most one, the larger
    shares first (a training batch, which the config makes divisible, splits into equal shares)."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class RankSlices:
    """A batch sampler's batches, each cut to this rank's slice (`rank_slice`). A batch with fewer items than
    ranks (a last validation batch) is left out on every rank, once said."""

    def __init__(self, batches, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self):
        for batch in self.batches:
            if len(batch) < self.world:
                logger.warning("a batch of %d items is left out: it has fewer items than the %d processes",
                               len(batch), self.world)
                continue
            yield list(batch)[rank_slice(len(batch), self.rank, self.world)]

    def __len__(self):
        return len(self.batches)


# -- the local launch ------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on this machine now, for the process group's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """A rank process gets SIGKILL when the process that launched it dies (Linux), so a killed run-suite
    leaves no rank training on its own."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _rank_main(rank: int, world: int, port: int, device_type: str, threads: int, target, args, stop, results):
    """One rank of `launch_local`: join the group, run `target(*args, should_stop)`, rank 0 returns its
    result to the launcher."""
    _die_with_parent()
    from .plugins import import_plugins

    import_plugins()  # the user's estimators and families, as in the launching process
    torch.set_num_threads(threads)
    os.environ["LOCAL_RANK"] = str(rank)
    init_process_group(backend_for(device_type), f"tcp://127.0.0.1:{port}", rank, world)
    try:
        result = target(*args, stop.is_set)
        if rank == 0:  # plain pickle: tensors by value (a queue would share them, gone with this process)
            results.put(pickle.dumps(result))
    finally:
        close()


def launch_local(world: int, device_type: str, target, args: tuple, should_stop=None):
    """Run `target(*args, should_stop)` in `world` new processes on this machine, one rank each (one per GPU,
    or CPU processes sharing this process's threads), and return rank 0's result. `should_stop` is polled
    here and passed on to every rank. A rank that fails or dies ends the others; the error names it."""
    import torch.multiprocessing as mp

    if device_type == "cuda" and torch.cuda.device_count() < world:
        raise RuntimeError(f"training.world_size is {world} but this machine has {torch.cuda.device_count()} "
                           f"CUDA device(s); set training.world_size to at most {torch.cuda.device_count()}")
    spawn = mp.get_context("spawn")
    stop, results = spawn.Event(), spawn.SimpleQueue()
    threads = max(1, torch.get_num_threads() // world) if device_type == "cpu" else torch.get_num_threads()
    context = mp.start_processes(_rank_main, args=(world, free_port(), device_type, threads, target, args, stop,
                                                   results), nprocs=world, join=False, start_method="spawn")
    watcher = threading.Event()

    def relay_stop():
        while not watcher.wait(0.5):
            if should_stop is not None and should_stop():
                stop.set()

    thread = threading.Thread(target=relay_stop, name="relay-stop", daemon=True)
    thread.start()
    try:
        while not context.join(timeout=1.0):
            pass
    except mp.ProcessExitedException as error:
        name = signal.Signals(-error.exit_code).name if error.exit_code < 0 else f"exit code {error.exit_code}"
        raise RuntimeError(f"rank {error.error_index} of {world} died ({name}); the run resumes from its last "
                           "checkpoint when the suite is run again") from None
    finally:
        watcher.set()
        thread.join()
    return pickle.loads(results.get())
