"""Speed benchmarks: aejax against the lecture's PyTorch models and loops.

``train_speed`` is the benchmark (``aejax bench``, or ``python -m benchmarks.train_speed``
from the repository root); ``torch_lecture`` holds the lecture's PyTorch models. Nothing is
imported here: ``torch_lecture`` needs torch, which only the benchmark and the parity tests use.
"""
