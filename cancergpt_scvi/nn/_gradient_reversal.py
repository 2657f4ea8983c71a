"""Gradient reversal (Ganin & Lempitsky, 2015) for domain-adversarial training."""

from __future__ import annotations

import torch
from torch import nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad_output, None


def grad_reverse(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-weight`` going back."""
    return _GradReverse.apply(x, weight)


class GradientReversal(nn.Module):
    """Gradient-reversal layer whose ``weight`` can be changed during training (scheduling)."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.weight)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
