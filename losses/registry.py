"""Losses by exact name (torchdistill style): `@register_loss("kd")`, then `get_loss("kd")`.

A loss here is a pure function of tensors: no model, no flags, no reduction over the batch beyond
what its docstring states, so it can be tested analytically.
"""
from __future__ import annotations

from collections.abc import Callable

_LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    def decorator(fn: Callable) -> Callable:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is registered twice ({_LOSSES[name].__module__} and {fn.__module__})")
        _LOSSES[name] = fn
        return fn
    return decorator


def get_loss(name: str) -> Callable:
    try:
        return _LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(_LOSSES))}") from None


def available_losses() -> list[str]:
    return sorted(_LOSSES)
