"""Shared core of the distillation toolkit: arguments, data, models, the trainer loop."""
