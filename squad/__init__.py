"""SQuAD v1.1 for run_squad_w_distillation.py: the official JSON, features with a document stride,
n-best span post-processing in plain numpy, and the official EM/F1."""
