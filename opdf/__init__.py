"""OPDF (Zhan et al., NeurIPS 2024): an over-parameterised student through MPO decomposition.

- mpo.py        exact MPO decomposition of a matrix into cores, its contraction, and the MPO linear layer
- transform.py  the model transform: target Linears -> MPO layers for training, `export` back to dense

(The tensor-alignment loss, the trainer's resume/best-model loading through the transform and the
run_glue.py flags come with the rest of the OPDF issue; `--use_opdf` is refused by name until then.)
"""
