"""Performance benchmarks (pytest-benchmark), kept apart from the tests: `python -m benchmarks.report` runs them
and writes BENCHMARKS.md; `python -m pytest benchmarks --benchmark-enable -p no:cacheprovider` runs them alone."""
