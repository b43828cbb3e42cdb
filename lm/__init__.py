"""LM distillation for train_lm_distill.py: flags, data, masking, the objective, students."""
