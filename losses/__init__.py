"""Loss functions registered by name. Importing the package registers every loss."""
from losses import hidden, kd, token_kd  # noqa: F401  (importing registers every loss by name)
from losses.registry import available_losses, get_loss, register_loss

__all__ = ["available_losses", "get_loss", "register_loss"]
