"""Which records a report reads: exactly the runs of the loaded suite, and the other records of its folder
named (never averaged in); unreadable record files are named and skipped, so one damaged file cannot stop a
report.

A suite's folder can hold records a rerun of the current suite file does not produce: runs of an earlier
`base`, of another `--set`, or of another suite file with the same `name:`. A run's id hashes its whole
resolved config (harness.suite.run_id_of), so the suite's run ids select exactly its runs. Without a suite
(a folder only) every readable record is reported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedResults:
    """The records a report stands on, and what it leaves out."""

    frame: pd.DataFrame  # one row per reported run (harness.store.load_results' columns), sorted by run id
    records: tuple  # the reported runs' records, sorted by run id
    expected: int | None  # how many runs the suite expands to; None without a suite
    outside: tuple  # run ids of records in the folder that are not runs of the suite, sorted
    damaged: tuple  # 'runs/<id>/record.json (reason)' of record files that could not be read, sorted


def load_results(suite_directory: Path, suite=None) -> LoadedResults:
    """The suite's records under `suite_directory` (every record when `suite` is None)."""
    suite_directory = Path(suite_directory)
    records, damaged = [], []
    for path in sorted(suite_directory.glob("**/runs/*/" + store.RECORD)):
        where = path.relative_to(suite_directory).as_posix()
        try:
            record = store.load_record(path.parent)
        except store.DamagedRecord as damage:
            damaged.append(f"{where} ({damage.problem})")
            log.warning("%s: left out of the report", damage)
            continue
        except OSError as error:
            damaged.append(f"{where} ({type(error).__name__}: {error.strerror})")
            log.warning("%s: unreadable run record, left out of the report (%s)", path, error)
            continue
        if record is None:  # removed since the glob
            continue
        records.append(record)
    outside: list[str] = []
    if suite is not None:
        wanted = {spec.run_id for spec in suite.runs}
        outside = sorted(r["run_id"] for r in records if r["run_id"] not in wanted)
        records = [r for r in records if r["run_id"] in wanted]
    records.sort(key=lambda r: r["run_id"])
    frame = store.results_frame(records)
    return LoadedResults(frame=frame, records=tuple(records), expected=None if suite is None else len(suite.runs),
                         outside=tuple(outside), damaged=tuple(damaged))
