"""A data-parallel run as a 2-task SLURM job (submitit's tasks per node, srun) on the local test cluster
(`bash scripts/local_slurm.sh up`; README "Several GPUs and nodes"): each task is one gloo rank, joined from
submitit's TorchDistributedEnvironment, and the record equals the local 2-process run's.
"""
from __future__ import annotations

import pytest

from harness import slurm as hs
from harness.status import RunStatus
from harness.suite import deep_merge
from test_slurm_cluster import BASE as CLUSTER_BASE
from test_slurm_cluster import (WAIT_S, _queue, cluster, comparable, local_metrics, make_suite,  # noqa: F401
                                record_of)

pytestmark = pytest.mark.slurm

#: push_pull, a difference quotient of distances, is too ill-conditioned for a comparison across process counts
BASE = deep_merge(CLUSTER_BASE, {"training": {"steps": 6, "checkpoint_every": 3}, "metrics": {"diagnostics": False}})


def test_two_task_job_ends_with_the_record_of_the_local_two_process_run(tmp_path):
    job = make_suite(tmp_path, "slurm_dp", base=BASE, slurm={"tasks_per_node": 2})
    (spec,) = job.runs
    out = tmp_path / "slurm"
    assert hs.run_slurm(job, out, wait=False, progress=False) is False
    local = make_suite(tmp_path, "local_dp", base=deep_merge(BASE, {"training": {"world_size": 2}}))
    (expected,) = local_metrics(local.runs, tmp_path / "local", threads=2).values()  # 1 thread per rank
    counts = hs.collect_slurm(job.name, out, wait=True, timeout_s=2 * WAIT_S, poll_s=1)
    assert counts == {"finished": 1, "running": 0, "pending": 0, "failed": 0}, _queue()
    record = record_of(out, spec)
    assert record["status"] == RunStatus.FINISHED, record.get("traceback")
    assert record["world_size"] == 2 and record["notes"]["data_parallel"]["world_size"] == 2
    got = comparable(record["metrics"])
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
