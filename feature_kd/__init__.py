"""Feature distillation: the one-to-one cross-correlation loss of Saadi et al. (2023),
hidden-state MSE and cosine, added to any task objective; a learned projection when hidden sizes differ.
The loss math is in losses/hidden.py."""
