"""Data-parallel training on the CPU with gloo, 2 processes (README "Several GPUs and nodes").

The spawned runs are shared between assertions (module fixtures): each 2-process run starts two Python
processes that import torch, which costs more than the tiny runs themselves.
* 2 processes at global batch B give the same loss history (1e-5 relative) and codebook as 1 process at B:
  VQ-VAE with ste, VQ-VAE with rotation and accumulate 2, the VQGAN cpu preset with its discriminator
  (synchronised BatchNorm, adaptive weight) on from step 2, and the decoder-aware hessian estimator;
* the codebooks are identical across the ranks;
* accumulate 2 matches one batch of the same size (in one process);
* kill -9 of run-suite during a 2-process run kills its ranks; run-suite again resumes it to the metrics of
  an uninterrupted 2-process run;
* bad settings are refused at load time with the reason; the sbatch text of gpus_per_node 8 has 8 tasks.
"""
from __future__ import annotations

import copy
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from harness import distributed, store
from harness import slurm as hs
from harness.config import ConfigError, RunConfig
from harness.status import RunStatus
from harness.suite import load_suite
from harness.train import Trainer
from helpers_harness import TINY_BASE, read_history, records_by_id, write_yaml

REL = 1e-5
#: push_pull is a relative change of distances after a step 1% long: a difference of close numbers, which
#: magnifies the last bits of float32 sums taken in another order (~1e-4 relative); the other values are not
ILL_CONDITIONED = ("push_pull", "wall_time_s")
#: history columns every autoencoder family logs
COMPARED = ("loss", "rec_loss", "aux_loss", "usage_batch", "perplexity", "quant_error")


def resolved(**sections) -> dict:
    """TINY_BASE with `sections` merged over it, plus the seed."""
    config = copy.deepcopy(TINY_BASE)
    config["training"].update(steps=4, batch_size=8, log_every=1, eval_every=2, checkpoint_every=2)
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return {**config, "seed": 0}


VQVAE_STE = resolved(estimator={"name": "ste"})
VQVAE_ROTATION = resolved(estimator={"name": "rotation"}, training={"accumulate": 2},
                          metrics={"diagnostics": False})
VQVAE_HESSIAN = resolved(estimator={"name": "hessian"}, metrics={"diagnostics": False})
VQGAN = resolved(model={"family": "vqgan", "preset": "cpu", "resolution": 16, "channels": 8,
                        "channel_mult": [1, 2], "num_codes": 16, "latent_dim": 4, "disc_start": 2,
                        "disc_layers": 1, "disc_channels": 8},
                 estimator={"name": "ste"}, metrics={"diagnostics": False})


def with_training(config: dict, **training) -> dict:
    config = copy.deepcopy(config)
    config["training"].update(training)
    return config


def codebook_of(model) -> torch.Tensor:
    return model.quantizer.embedding.detach().clone()


def train_here(config: dict, directory: Path) -> tuple[list[dict], dict, torch.Tensor]:
    """(history, final metrics, codebook) of `config` trained in this process."""
    trainer = Trainer(RunConfig.from_resolved(config), directory, progress=False)
    result = trainer.run()
    assert result.status == RunStatus.FINISHED
    return trainer.history, result.metrics, codebook_of(trainer.model)


def _train_all_and_gather(configs: list[RunConfig], directories: list[str], should_stop):
    """A rank of `distributed.launch_local`: train each run in turn, gathering every rank's codebook after
    each (one launch for all the runs: starting the processes costs more than the tiny runs)."""
    outcomes = []
    for config, directory in zip(configs, directories):
        trainer = Trainer(config, directory, progress=False, should_stop=should_stop)
        result = trainer.run()
        codebook = codebook_of(trainer.model)
        codebooks = [torch.empty_like(codebook) for _ in range(dist.get_world_size())]
        dist.all_gather(codebooks, codebook)
        outcomes.append((trainer.history, result, codebooks))
    return outcomes


def assert_same_history(got: list[dict], expected: list[dict], columns=COMPARED) -> None:
    assert [(row["kind"], row["step"]) for row in got] == [(row["kind"], row["step"]) for row in expected]
    for row, reference in zip(got, expected):
        for key in reference:
            if key in ("kind", "step", *ILL_CONDITIONED) or (row["kind"] == "train" and key not in columns):
                continue
            assert row[key] == pytest.approx(reference[key], rel=REL, abs=1e-7), (row["kind"], row["step"], key)


def assert_same_metrics(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key not in ILL_CONDITIONED:
            assert got[key] == pytest.approx(value, rel=REL, abs=1e-7), key


PAIRED = {"ste": VQVAE_STE, "rotation, accumulate 2": VQVAE_ROTATION, "vqgan": VQGAN, "hessian": VQVAE_HESSIAN}
#: the run that test_kill_9... kills and resumes through run-suite; uninterrupted in the shared launch
KILLED = with_training(VQVAE_STE, steps=40, checkpoint_every=4, eval_every=20, world_size=2)


def write_killed_suite(directory: Path) -> Path:
    """KILLED as a suite file (a suite applies the preset's training settings too, e.g. its lr)."""
    base = copy.deepcopy(KILLED)
    base.pop("seed")
    return write_yaml(directory / "killed.yaml", {"name": "killed", "seeds": [0], "base": base})


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Every run of PAIRED, and KILLED, trained by 2 local processes in one launch: name -> (history, result, every
    rank's codebook), and the runs' folders."""
    root = tmp_path_factory.mktemp("two")
    configs = [RunConfig.from_resolved(with_training(config, world_size=2)) for config in PAIRED.values()]
    configs.append(load_suite(write_killed_suite(root)).runs[0].config)
    names = [*PAIRED, "killed"]
    directories = [str(root / str(i)) for i in range(len(names))]
    outcomes = distributed.launch_local(2, "cpu", _train_all_and_gather, (configs, directories))
    return dict(zip(names, outcomes)), dict(zip(names, map(Path, directories)))


@pytest.fixture(scope="module", params=list(PAIRED))
def paired(request, two_process_runs, tmp_path_factory):
    """The same run by 1 process (batch B in one piece) and by 2 processes."""
    config = PAIRED[request.param]
    one = train_here(with_training(config, accumulate=1), tmp_path_factory.mktemp("one"))
    outcomes, directories = two_process_runs
    return config, one, outcomes[request.param], directories[request.param]


def test_two_processes_match_one(paired):
    config, (history, metrics, codebook), (history2, result2, codebooks), _ = paired
    assert result2.status == RunStatus.FINISHED
    assert_same_history(history2, history)
    assert_same_metrics(result2.metrics, metrics)
    assert torch.allclose(codebooks[0], codebook, rtol=REL, atol=1e-6)
    assert result2.notes["data_parallel"] == {"world_size": 2, "accumulate": config["training"].get("accumulate", 1),
                                              "backend": "gloo"}


def test_codebooks_are_identical_across_ranks(paired):
    codebooks = paired[2][2]
    assert torch.equal(codebooks[0], codebooks[1])


def test_rank_zero_alone_writes_and_its_checkpoint_holds_the_run(paired):
    _, _, (history2, _, codebooks), directory = paired
    assert len(read_history(directory)) == len(history2)
    state = torch.load(directory / store.CHECKPOINT, weights_only=True)
    assert torch.equal(state["model"]["quantizer.embedding"], codebooks[0])


def test_accumulate_two_matches_one_batch_of_the_same_size(tmp_path):
    history, metrics, codebook = train_here(with_training(VQVAE_STE, batch_size=16), tmp_path / "batch")
    history2, metrics2, codebook2 = train_here(with_training(VQVAE_STE, batch_size=16, accumulate=2),
                                               tmp_path / "accumulate")
    assert_same_history(history2, history)
    assert_same_metrics(metrics2, metrics)
    assert torch.allclose(codebook2, codebook, rtol=REL, atol=1e-6)


def test_rank_slices_cover_the_batch_in_order():
    assert [distributed.rank_slice(8, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert [distributed.rank_slice(7, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]
    batches = list(distributed.RankSlices([[0, 1, 2, 3, 4], [5]], rank=1, world=2))
    assert batches == [[3, 4]]  # the one-item batch is left out on every rank


# -- kill -9 and resume ---------------------------------------------------------------------------------------

def test_kill_9_and_resume_ends_with_the_metrics_of_an_uninterrupted_run(tmp_path, two_process_runs):
    from test_executors import _run_suite_process, _wait_for_group_to_end

    suite = write_killed_suite(tmp_path)
    out = tmp_path / "out"
    args = [str(suite), "--out", str(out), "--no-progress", "-q"]
    process = _run_suite_process(args, tmp_path / "killed.log")
    deadline = time.monotonic() + 240
    while not list((out / "killed" / "runs").glob(f"*/{store.CHECKPOINT}")):
        assert process.poll() is None, (tmp_path / "killed.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # run-suite alone: its ranks must die with it
    process.wait(30)
    _wait_for_group_to_end(process.pid)
    (record,) = records_by_id(out, "killed").values()
    assert record["status"] == RunStatus.RUNNING  # died holding the run, part-way
    assert torch.load(next((out / "killed" / "runs").glob(f"*/{store.CHECKPOINT}")),
                      weights_only=True)["step"] < 40
    resumed = _run_suite_process(args, tmp_path / "resumed.log")
    assert resumed.wait(600) == 0, (tmp_path / "resumed.log").read_text()
    (record,) = records_by_id(out, "killed").values()
    assert record["status"] == RunStatus.FINISHED and record["resumed"] and record["attempts"] == 2
    uninterrupted = two_process_runs[0]["killed"][1]
    assert uninterrupted.status == RunStatus.FINISHED
    assert_same_metrics(record["metrics"], uninterrupted.metrics)


# -- settings ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("training, key, words", [
    ({"batch_size": 8, "world_size": 3}, "training.batch_size", "closest: 6, 9"),
    ({"batch_size": 8, "world_size": 2, "accumulate": 3}, "training.batch_size", "closest: 6, 12"),
    ({"world_size": 2, "device": "cuda:1"}, "training.device", "use 'cuda' or 'auto'"),
    ({"world_size": 0}, "training.world_size", "at least 1"),
])
def test_bad_parallel_settings_are_refused_with_the_reason(training, key, words):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_resolved(with_training(VQVAE_STE, **training))
    assert key in str(error.value) and words in str(error.value)


def test_a_family_without_data_refuses_world_size():
    config = {"model": {"family": "himmelblau"}, "estimator": {"name": "ste"},
              "training": {"steps": 3, "world_size": 2}, "seed": 0}
    with pytest.raises(ConfigError, match="training.world_size.*no batch to split"):
        RunConfig.from_resolved(config)


def _suite_with_slurm(tmp_path: Path, slurm: dict, **training):
    config = with_training(VQVAE_STE, **training)
    config.pop("seed")
    return load_suite(write_yaml(tmp_path / "s.yaml", {"name": "s", "seeds": [0], "base": config, "slurm": slurm}))


def test_sbatch_of_8_gpus_per_node_runs_8_tasks_per_node(tmp_path):
    from test_slurm import _sbatch_lines, _submit_mocked

    suite = _suite_with_slurm(tmp_path, {"gpus_per_node": 8, "nodes": 2}, batch_size=16)
    lines = _sbatch_lines(_submit_mocked(suite, (tmp_path / "out").absolute()))
    assert "#SBATCH --ntasks-per-node=8" in lines and "#SBATCH --gpus-per-node=8" in lines
    assert "#SBATCH --nodes=2" in lines


def test_slurm_tasks_and_world_size_together_are_refused(tmp_path):
    suite = _suite_with_slurm(tmp_path, {"gpus_per_node": 2}, world_size=2)
    with pytest.raises(hs.SlurmError, match="set training.world_size to 1"):
        hs.slurm_settings(suite)
    suite = _suite_with_slurm(tmp_path, {"tasks_per_node": 3})
    with pytest.raises(hs.SlurmError, match="3 process.*closest: 6, 9"):
        hs.slurm_settings(suite)


# -- sharded fidelity statistics --------------------------------------------------------------------------------

def _sharded_frechet(originals: torch.Tensor, reconstructions: torch.Tensor, should_stop):
    """A rank of launch_local: its shard (every world-th item, as fidelity's Shard takes them) of the features,
    merged with the other ranks' through distributed.gather, as Trainer.fidelity does."""
    from harness.fidelity import GaussianStats, Shard, frechet_distance_of_states

    place = distributed.place()
    shard = Shard(place.rank, place.world, distributed.gather)
    rows = shard.indices(len(originals))
    state = {}
    for name, features in (("originals", originals), ("reconstructions", reconstructions)):
        stats = GaussianStats()
        stats.add(features[rows])
        state[name] = stats.state()
    return distributed.gather(place.rank), frechet_distance_of_states(shard.all_states(state))


def test_fidelity_statistics_gathered_over_two_ranks_equal_one_process():
    from harness.fidelity import GaussianStats, frechet_distance_of_states

    generator = torch.Generator().manual_seed(0)
    originals = torch.randn(21, 6, generator=generator, dtype=torch.float64)
    reconstructions = originals + 0.3 * torch.randn(21, 6, generator=generator, dtype=torch.float64)
    ranks, sharded = distributed.launch_local(2, "cpu", _sharded_frechet, (originals, reconstructions))
    whole = {}
    for name, features in (("originals", originals), ("reconstructions", reconstructions)):
        stats = GaussianStats()
        stats.add(features)
        whole[name] = stats.state()
    assert ranks == [0, 1]  # gathered in rank order
    assert sharded == pytest.approx(frechet_distance_of_states([whole]), rel=1e-9)
