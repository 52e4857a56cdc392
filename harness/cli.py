"""Command-line entry points: `run-suite` and `make-report` (README "Running suites").

Both set up logging once (`setup_logging`: the harness's messages on stderr, the results table on stdout),
import the user's plugins (harness/plugins.py), and end a Ctrl-C with one line and exit status 130 (README
"Reliability"). The harness's modules are imported inside the functions, not here: `run-suite --jobs N`
starts its worker processes (harness/executors.py) before this process spends a second importing torch and
loading the suite.
"""
from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
from pathlib import Path

from tqdm.auto import tqdm

from . import store
from .plugins import PluginError, import_plugins
from .status import RunStatus

logger = logging.getLogger("harness.cli")  # not __name__: `python -m harness.cli` runs as __main__

#: The exit status after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130

#: The packages whose loggers the entry points show (each module logs to logging.getLogger(__name__)).
LOGGED_PACKAGES = ("harness", "estimators", "models")


class _ProgressAwareHandler(logging.Handler):
    """Writes each message through tqdm.write to the current sys.stderr: above any open progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 — logging's own convention: report, never raise
            self.handleError(record)


def setup_logging(prog: str, verbosity: int = 0) -> None:
    """Show the harness's messages on stderr as `prog: message`: INFO and up by default, DEBUG with
    verbosity > 0 (-v), WARNING and up with verbosity < 0 (-q). Calling it again replaces its handler."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = _ProgressAwareHandler()
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    for name in LOGGED_PACKAGES:
        package_logger = logging.getLogger(name)
        for old in [h for h in package_logger.handlers if isinstance(h, _ProgressAwareHandler)]:
            package_logger.removeHandler(old)
        package_logger.addHandler(handler)
        package_logger.setLevel(level)


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages (debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-suite", description="Run a suite of gradient-estimator experiments and report the results.")
    parser.add_argument("suite", help="suite YAML file, or a bare name resolved in the project's suites/ folder")
    parser.add_argument("--profile", help="profile of the suite to apply (e.g. cpu, paper)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a setting for every run, e.g. --set training.steps=100 (repeatable)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local runs at once (process pool), capped at the cores and the runs to do; default 1")
    parser.add_argument("--dry-run", action="store_true", help="print the expanded runs and exit")
    parser.add_argument("--force", action="store_true", help="rerun finished runs too")
    parser.add_argument("--estimate", action="store_true",
                        help="time a few training steps of each configuration on this machine and print the "
                             "projected device-hours; trains nothing (the data need not be here)")
    parser.add_argument("--estimate-steps", type=int, default=3, metavar="N",
                        help="--estimate: timed steps per configuration, after one warm-up step (default 3)")
    parser.add_argument("--out", default="results", help="results directory (default: ./results)")
    parser.add_argument("--no-wait", action="store_true", help="slurm: submit and return; collect later")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (the suite's progress line is logged at each ended run instead)")
    _add_verbosity(parser)
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
    setup_logging("run-suite", args.verbose - args.quiet)
    if args.jobs < 1:
        logger.error("--jobs must be at least 1")
        return 2
    pool = None
    if args.jobs > 1 and args.executor == "local" and not args.dry_run:
        from .executors import start_pool

        pool = start_pool(args.jobs)  # its workers import torch while this process does (below)
    try:
        return _run_suite(args, pool)
    except KeyboardInterrupt:  # while the suite loaded
        logger.error("interrupted before any run started")
        return INTERRUPTED
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)  # already done unless the suite did not load


def _interrupted_line(suite, out: Path) -> str:
    """The one line run-suite ends with on Ctrl-C: how many of the suite's runs are finished."""
    from .runner import run_status

    finished = sum(run_status(out, spec) == RunStatus.FINISHED for spec in suite.runs)
    return (f"interrupted: {finished} run{'s' * (finished != 1)} finished, {len(suite.runs) - finished} left; "
            "run the same command to resume")


def _run_suite(args: argparse.Namespace, pool) -> int:
    from .suite import SuiteError, load_suite

    try:
        import_plugins()
        suite = load_suite(args.suite, profile=args.profile, overrides=args.overrides, check_data=not args.estimate)
    except (SuiteError, PluginError) as error:
        logger.error("%s", error)
        return 2
    if args.estimate:
        from .estimate import estimate_suite, estimate_table

        if args.estimate_steps < 1:
            logger.error("--estimate-steps must be at least 1")
            return 2
        print(estimate_table(suite, estimate_suite(suite, args.estimate_steps), args.estimate_steps))
        return 0
    out = Path(args.out)
    header = (f"suite {suite.name} ({suite.path}), profile {suite.profile or '(none)'}: {len(suite.runs)} runs "
              f"-> {store.suite_dir(out, suite.name)}")
    if args.dry_run:
        print(header)
        print(dry_run_table(suite, out))
        if args.executor == "slurm":
            from .slurm import sbatch_preview

            print(f"\nSLURM submission (not submitted):\n{sbatch_preview(suite, out, force=args.force)}")
        return 0
    logger.info("%s", header)
    try:
        return _train_and_report(args, suite, out, pool)
    except KeyboardInterrupt:
        logger.error("%s", _interrupted_line(suite, out))
        return INTERRUPTED


def _train_and_report(args: argparse.Namespace, suite, out: Path, pool) -> int:
    from . import report
    from .runner import run_status
    from .suite import SuiteError

    show_bars = not args.no_progress
    if args.executor == "slurm":
        from .slurm import SlurmError, run_slurm

        try:
            finished_all = run_slurm(suite, out, force=args.force, wait=not args.no_wait, progress=show_bars)
        except (SuiteError, SlurmError) as error:
            logger.error("%s", error)
            return 2
        if not finished_all:
            return 0
    else:
        from .executors import cap_jobs, run_local, run_pool

        to_do = [spec for spec in suite.runs if args.force or run_status(out, spec) != RunStatus.FINISHED]
        jobs = cap_jobs(args.jobs, len(to_do), max((spec.config.training.world_size for spec in to_do), default=1))
        if jobs == 1:
            run_local(suite.runs, out, force=args.force, progress=show_bars)
        else:
            # This process only waits while its workers train: it imports the report's dependencies meanwhile.
            importer = threading.Thread(target=report.import_dependencies, name="import-report-dependencies",
                                        daemon=True)
            importer.start()
            run_pool(suite.runs, out, jobs, force=args.force, progress=show_bars, pool=pool)
            importer.join()  # before the report imports the same modules itself
        for spec in suite.runs:  # runs another run-suite process holds: wait until it lets go of them
            if run_status(out, spec) == RunStatus.RUNNING:
                with store.RunLock(store.run_dir(out, spec.suite, spec.run_id), wait=True):
                    pass
    result = report.write_suite_report(store.suite_dir(out, suite.name), suite=suite)
    print(result["summary"])
    for path in result["files"]:
        logger.info("wrote %s", path)
    logger.info("report: %s", store.suite_dir(out, suite.name) / report.REPORT_HTML)
    statuses = [run_status(out, spec) for spec in suite.runs]
    failed = [s for s in statuses if s != RunStatus.FINISHED]
    if failed:
        logger.error("%d of %d runs did not finish (%s); see their record.json; re-running the suite resumes all "
                     "but the diverged ones (a result: --force reruns them)",
                     len(failed), len(statuses), ", ".join(sorted(set(map(str, failed)))))
        return 1
    return 0


def make_report_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make-report",
                                     description="Regenerate reports from existing results, without training.")
    parser.add_argument("suites", nargs="*", help="suite names or files (default: every suite under --out)")
    parser.add_argument("--out", default="results", help="results directory (default: ./results)")
    parser.add_argument("--profile", help="the profile the suite ran with (a report shows exactly those runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="the --set overrides the suite ran with (repeatable)")
    parser.add_argument("--interval", choices=("below", "beside", "caption"),
                        help="LaTeX tables: the 95%% interval below the mean, beside it, or only in the caption "
                             "(default: the suite's report.interval, else below)")
    parser.add_argument("--names", choices=("paper", "registry", "both"),
                        help="LaTeX tables: the approaches' names (default: the suite's report.names, else paper)")
    _add_verbosity(parser)
    args = parser.parse_args(argv)
    setup_logging("make-report", args.verbose - args.quiet)
    try:
        return _make_report(args)
    except KeyboardInterrupt:
        logger.error("interrupted; run the same command to write the reports again")
        return INTERRUPTED


def _make_report(args: argparse.Namespace) -> int:
    from . import report
    from .suite import SuiteError, load_suite

    out = Path(args.out)
    try:
        import_plugins()
    except PluginError as error:
        logger.error("%s", error)
        return 2
    names = args.suites or sorted({p.parent.parent.parent.name for p in out.glob(f"*/runs/*/{store.RECORD}")})
    if not names:
        where = f"{out} is not a folder" if not out.is_dir() else f"{out} holds no run records"
        logger.error("%s (looked for %s); run `run-suite SUITE --out %s` first, or point --out at the folder "
                     "run-suite wrote to", where, out / "<suite>" / "runs" / "<run>" / store.RECORD, out)
        return 1
    status = 0
    for name in dict.fromkeys(names):
        try:
            suite = load_suite(name, profile=args.profile, overrides=args.overrides)
        except SuiteError as error:
            if args.profile or args.overrides:  # asked for a configuration: a suite that does not load is an error
                logger.error("%s", error)
                status = 1
                continue
            suite = None
        suite_name = suite.name if suite else Path(name).stem
        directory = store.suite_dir(out, suite_name)
        if not directory.exists():
            logger.error("no results for %r under %s; run `run-suite %s --out %s` first", suite_name, out, name, out)
            status = 1
            continue
        if (directory / "submitit" / "manifest.json").exists():  # jobs submitted with --no-wait
            from .slurm import collect_slurm

            collect_slurm(suite_name, out)  # settle the records of jobs that ended; submits nothing
        if not any(directory.glob(f"runs/*/{store.RECORD}")):
            logger.error("no run records in %s; run `run-suite %s --out %s` first", directory / "runs", name, out)
            status = 1
            continue
        result = report.write_suite_report(directory, suite=suite, interval=args.interval, names=args.names)
        print(f"== {suite_name}\n{result['summary']}")
        for path in result["files"]:
            logger.info("wrote %s", path)
        logger.info("report: %s", directory / report.REPORT_HTML)
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
