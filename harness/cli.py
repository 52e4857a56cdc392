"""Command-line entry points: `run-suite` and `make-report` (README "Running suites").

The harness's modules are imported inside the functions, not here: `run-suite --jobs N` starts its worker
processes (harness/executors.py) before this process spends a second importing torch and loading the suite.
"""
from __future__ import annotations

import argparse
import gc
import sys
import threading
from pathlib import Path

from . import store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-suite", description="Run a suite of gradient-estimator experiments and report the results.")
    parser.add_argument("suite", help="suite YAML file, or a bare name resolved in the project's suites/ folder")
    parser.add_argument("--profile", help="profile of the suite to apply (e.g. cpu, paper)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a setting for every run, e.g. --set training.steps=100 (repeatable)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--jobs", type=int, default=1, help="local runs at once (process pool); default 1")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit")
    parser.add_argument("--force", action="store_true", help="rerun finished runs too")
    parser.add_argument("--out", default="results", help="results directory (default: ./results)")
    parser.add_argument("--no-wait", action="store_true", help="slurm: submit and return; collect later")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def dry_run_table(suite, out: Path) -> str:
    from .runner import run_status

    keys = list(dict.fromkeys(k for spec in suite.runs for k in spec.label))
    header = ["run_id"] + keys + ["status"]
    rows = [[spec.run_id] + [str(spec.label.get(k, "")) for k in keys] + [run_status(out, spec) or "new"]
            for spec in suite.runs]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def run_suite_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.jobs < 1:
        print("run-suite: --jobs must be at least 1", file=sys.stderr)
        return 2
    pool = None
    if args.jobs > 1 and args.executor == "local" and not args.dry_run:
        from .executors import start_pool

        pool = start_pool(args.jobs)  # its workers import torch while this process does (below)
    try:
        return _run_suite(args, pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)  # already done unless the suite did not load


def _run_suite(args: argparse.Namespace, pool) -> int:
    from . import report
    from .runner import run_status
    from .suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite, profile=args.profile, overrides=args.overrides)
    except SuiteError as error:
        print(f"run-suite: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"suite {suite.name} ({suite.path}), profile {suite.profile or '(none)'}: {len(suite.runs)} runs "
          f"-> {store.suite_dir(out, suite.name)}")
    if args.dry_run:
        print(dry_run_table(suite, out))
        if args.executor == "slurm":
            from .slurm import sbatch_preview

            try:
                print(f"\nsbatch script (not submitted):\n{sbatch_preview(suite, out, force=args.force)}")
            except SuiteError as error:
                print(f"run-suite: {error}", file=sys.stderr)
                return 2
        return 0
    progress = not args.no_progress
    if args.executor == "slurm":
        from .slurm import SlurmError, run_slurm

        try:
            finished_all = run_slurm(suite, out, force=args.force, wait=not args.no_wait, progress=progress)
        except (SuiteError, SlurmError) as error:
            print(f"run-suite: {error}", file=sys.stderr)
            return 2
        if not finished_all:
            return 0
    elif args.jobs == 1:
        from .executors import run_local

        run_local(suite.runs, out, force=args.force, progress=progress)
    else:
        from .executors import run_pool

        # This process only waits while its workers train: it imports the report's dependencies meanwhile.
        importer = threading.Thread(target=report.import_dependencies, name="import-report-dependencies",
                                    daemon=True)
        importer.start()
        run_pool(suite.runs, out, args.jobs, force=args.force, progress=progress, pool=pool)
        importer.join()  # before the report imports the same modules itself
    if args.executor == "local":  # runs another run-suite process holds: wait until it lets go of them
        for spec in suite.runs:
            if run_status(out, spec) == "running":
                with store.RunLock(store.run_dir(out, spec.suite, spec.run_id), wait=True):
                    pass
    result = report.write_suite_report(store.suite_dir(out, suite.name), suite=suite)
    print(result["summary"])
    for path in result["files"]:
        print(f"wrote {path}")
    statuses = [run_status(out, spec) for spec in suite.runs]
    failed = [s for s in statuses if s != store.FINISHED]
    if failed:
        print(f"{len(failed)} of {len(statuses)} runs did not finish ({', '.join(sorted(set(map(str, failed))))}); "
              "see their record.json; re-running the suite retries them", file=sys.stderr)
        return 1
    return 0


def make_report_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make-report",
                                     description="Regenerate reports from existing results, without training.")
    parser.add_argument("suites", nargs="*", help="suite names or files (default: every suite under --out)")
    parser.add_argument("--out", default="results", help="results directory (default: ./results)")
    args = parser.parse_args(argv)
    from . import report
    from .suite import SuiteError, load_suite

    out = Path(args.out)
    names = args.suites or sorted(p.parent.parent.parent.name for p in out.glob("*/runs/*/record.json"))
    status = 0
    for name in dict.fromkeys(names):
        try:
            suite = load_suite(name)
        except SuiteError:
            suite = None
        suite_name = suite.name if suite else Path(name).stem
        directory = store.suite_dir(out, suite_name)
        if not directory.exists():
            print(f"make-report: no results for {suite_name!r} under {out}", file=sys.stderr)
            status = 1
            continue
        if (directory / "submitit" / "manifest.json").exists():  # jobs submitted with --no-wait
            from .slurm import collect_slurm

            collect_slurm(suite_name, out)  # settle the records of jobs that ended; submits nothing
        result = report.write_suite_report(directory, suite=suite)
        print(f"== {suite_name}\n{result['summary']}")
        for path in result["files"]:
            print(f"wrote {path}")
    return status


def exiting(status: int) -> int:
    """`status`, with every object moved out of the garbage collector's reach first (gc.freeze).

    For a process about to exit: the interpreter's final collection would walk the whole heap (1.3 s measured
    after a suite of four short VQ-VAE runs) only for the OS to free it anyway.
    """
    gc.freeze()
    return status


def run_suite_command() -> int:
    """The `run-suite` console script."""
    return exiting(run_suite_main())


def make_report_command() -> int:
    """The `make-report` console script."""
    return exiting(make_report_main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_suite_command())
