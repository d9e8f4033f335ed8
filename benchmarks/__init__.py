"""Entry points and measured results of the speed benchmarks (repository root only, not installed).

The benchmarks themselves are ``aejax.benchmarks``; ``results/`` holds their measured
tables, one file per machine.
"""
