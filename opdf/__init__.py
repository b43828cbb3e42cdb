"""OPDF (Zhan et al., NeurIPS 2024): an over-parameterised student through MPO decomposition.

- mpo.py        exact MPO decomposition of a matrix into cores, its contraction, and the MPO linear layer
- transform.py  the model transform: target Linears -> MPO layers for training, `export` back to dense
- align.py      the tensor alignment loss (student's auxiliary cores -> the teacher's), the layer map
- args.py       the flags (`--use_opdf`, `--mpo_*`, `--opdf_*`)
- build.py      wiring for entry scripts: (transform, alignment loss) from the flags
"""
