"""The record store (harness/store.py) without training: damaged records are skipped with a warning naming
the file, never a crash; every file is written with the user's umask."""
from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from harness import store
from harness.checkpoint import save_checkpoint
from harness.status import RunStatus

#: What a damaged record.json may hold, and the problem the error names.
DAMAGED = {
    "truncated": (b'{"run_id": "abc", "suite": "s", "stat', "not JSON"),
    "empty": (b"", "not JSON"),
    "binary": (b"\x80\xff\x00garbage", "not JSON"),
    "a list": (b"[1, 2]", "a JSON list, not an object"),
    "no status": (b'{"run_id": "abc", "suite": "s"}', "unknown status None"),
    "unknown status": (b'{"run_id": "abc", "suite": "s", "status": "done"}', "unknown status 'done'"),
    "no run_id": (b'{"suite": "s", "status": "finished"}', "no run_id"),
}


def _record(run_id: str, status: RunStatus = RunStatus.FINISHED, **fields) -> dict:
    return {"run_id": run_id, "suite": "s", "status": status.value, "config": {"seed": 0}, "label": {},
            "metrics": {"val_rec_loss": 0.5}, **fields}


def _write_runs(out, payloads: dict[str, bytes]):
    for run_id, payload in payloads.items():
        directory = store.run_dir(out, "s", run_id)
        directory.mkdir(parents=True)
        (directory / store.RECORD).write_bytes(payload)


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_load_record_names_the_damaged_file(tmp_path, kind):
    payload, problem = DAMAGED[kind]
    (tmp_path / store.RECORD).write_bytes(payload)
    with pytest.raises(store.DamagedRecord) as error:
        store.load_record(tmp_path)
    message = str(error.value)
    assert str(tmp_path / store.RECORD) in message and problem in message
    assert "rerunning the suite reruns this run" in message and store.DAMAGED_RECORD in message


def test_load_record_without_a_record(tmp_path):
    assert store.load_record(tmp_path) is None and store.read_record(tmp_path) is None


def test_read_record_warns_and_returns_none(tmp_path, caplog):
    (tmp_path / store.RECORD).write_bytes(DAMAGED["truncated"][0])
    with caplog.at_level(logging.WARNING, logger="harness.store"):
        assert store.read_record(tmp_path) is None
    assert str(tmp_path / store.RECORD) in caplog.text


def test_iter_records_and_load_results_skip_damaged_records(tmp_path, caplog):
    out = tmp_path / "results"
    _write_runs(out, {"a": json.dumps(_record("a")).encode(), "b": DAMAGED["truncated"][0],
                      "c": json.dumps(_record("c", RunStatus.DIVERGED)).encode(), "d": DAMAGED["binary"][0]})
    with caplog.at_level(logging.WARNING, logger="harness.store"):
        assert [r["run_id"] for r in store.iter_records(out)] == ["a", "c"]
        df = store.load_results(out / "s")
    assert list(df["run_id"]) == ["a", "c"] and list(df["status"]) == ["finished", "diverged"]
    for run_id in ("b", "d"):
        assert str(store.run_dir(out, "s", run_id) / store.RECORD) in caplog.text
    # readers only read: nothing is set aside or rewritten
    assert not list(out.glob("**/" + store.DAMAGED_RECORD))
    assert (store.run_dir(out, "s", "b") / store.RECORD).read_bytes() == DAMAGED["truncated"][0]


def test_keep_damaged_record_copies_the_file(tmp_path):
    (tmp_path / store.RECORD).write_bytes(DAMAGED["binary"][0])
    kept = store.keep_damaged_record(tmp_path)
    assert kept == tmp_path / store.DAMAGED_RECORD and kept.read_bytes() == DAMAGED["binary"][0]
    assert (tmp_path / store.RECORD).read_bytes() == DAMAGED["binary"][0]


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda mask: f"umask{mask:03o}")
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_files_are_written_with_the_umask(tmp_path, umask):
    """Records, histories, checkpoints and reports get 0666 less the umask, as with open() (mkstemp would
    make every one 0600)."""
    import torch

    store.write_json(tmp_path / store.RECORD, _record("a"))
    store.write_history(tmp_path / store.HISTORY, [{"kind": "train", "step": 0, "loss": 1.0}])
    save_checkpoint(tmp_path / store.CHECKPOINT, {"weights": torch.zeros(2)})
    store.atomic_write_text(tmp_path / "report.md", "text")
    for name in (store.RECORD, store.HISTORY, store.CHECKPOINT, "report.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no temporary file left behind
        [store.RECORD, store.HISTORY, store.CHECKPOINT, "report.md"])


def test_atomic_write_replaces_an_existing_file(tmp_path):
    store.atomic_write_text(tmp_path / "x.txt", "first")
    store.atomic_write_text(tmp_path / "x.txt", "second")
    assert (tmp_path / "x.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
