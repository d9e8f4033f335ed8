"""Speed benchmarks: aejax against the lecture's PyTorch models and loops."""
