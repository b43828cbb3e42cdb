"""Loss functions registered by name. Importing the package registers every loss."""
from losses import features, kd  # noqa: F401  (registers kd, kd_mse, ce, mse; corr, hidden_mse, hidden_cos)
from losses.registry import available_losses, get_loss, register_loss

__all__ = ["available_losses", "get_loss", "register_loss"]
