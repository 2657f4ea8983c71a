"""Domain-adversarial objective: discriminators behind a gradient-reversal layer."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ._domain_discriminator import DomainDiscriminator
from ._gradient_reversal import grad_reverse


class DomainAdversary(nn.Module):
    """Gradient-reversal adversaries against the domain covariates (batch, technology).

    One :class:`DomainDiscriminator` per covariate with more than one category learns to
    recognise the domain of each cell from its embedding; a gradient-reversal layer in front of
    them (Ganin & Lempitsky, 2015) sends the encoder the opposite gradient, scaled by the
    reversal weight, towards an embedding that does not reveal the domain. With a tissue
    covariate the discriminators are told each cell's tissue, so the push removes batch and
    technology within a tissue rather than the tissue itself (patients are nested in tissues).

    Parameters
    ----------
    embed_dim
        Width of the cell embedding.
    n_domains
        Categories of each covariate, e.g. ``{"batch": 12, "technology": 2}``; covariates with
        one category get no discriminator.
    n_conditions
        Categories of the tissue the discriminators are told; 0 or 1: unconditioned.
    """

    def __init__(self, embed_dim: int, n_domains: Mapping[str, int], n_conditions: int = 0):
        super().__init__()
        self.n_conditions = int(n_conditions) if int(n_conditions) > 1 else 0
        self.discriminators = nn.ModuleDict(
            {
                key: DomainDiscriminator(embed_dim, int(n), n_conditions=self.n_conditions)
                for key, n in n_domains.items()
                if int(n) > 1
            }
        )

    @property
    def covariates(self) -> list[str]:
        """Names of the covariates that have a discriminator."""
        return list(self.discriminators)

    def forward(
        self,
        z: torch.Tensor,
        labels: Mapping[str, torch.Tensor],
        condition: torch.Tensor | None = None,
        weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Summed discriminator cross-entropy and per-covariate metrics.

        Parameters
        ----------
        z
            ``(B, embed_dim)`` cell embeddings.
        labels
            Category codes ``(B,)`` or ``(B, 1)`` of every covariate with a discriminator.
        condition
            Tissue codes ``(B,)``; needed when the adversary is conditioned.
        weight
            Reversal weight: the encoder receives ``-weight`` times the gradient the
            discriminators learn from (0: the discriminators learn, the encoder is not pushed).

        Returns
        -------
        The loss (a scalar; zero without discriminators) and, per covariate, the detached
        cross-entropy (``adv_loss_<name>``) and discriminator accuracy (``disc_acc_<name>``).
        """
        missing = [key for key in self.discriminators if key not in labels]
        if missing:
            raise ValueError(f"The adversary judges {missing}: pass their category codes.")
        if self.n_conditions and condition is None:
            raise ValueError("The adversary is conditioned on the tissue: pass its codes.")
        loss = torch.zeros((), device=z.device)
        metrics: dict[str, torch.Tensor] = {}
        reversed_z = grad_reverse(z, weight)
        for key, discriminator in self.discriminators.items():
            target = labels[key].long().view(-1)
            logits = discriminator(reversed_z, condition)
            ce = F.cross_entropy(logits, target)
            loss = loss + ce
            metrics[f"adv_loss_{key}"] = ce.detach()
            metrics[f"disc_acc_{key}"] = (logits.argmax(-1) == target).float().mean()
        return loss, metrics
