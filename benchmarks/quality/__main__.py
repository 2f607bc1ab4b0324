"""``python -m benchmarks.quality``: see :mod:`benchmarks.quality.cli`."""

from benchmarks.quality.cli import main

main()
