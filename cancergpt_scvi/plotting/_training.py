"""Training curves from a model's history."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_training_history(
    history: Mapping[str, pd.DataFrame], path: str | Path | None = None
) -> Figure:
    """Plot the losses and discriminator accuracies logged during training.

    One panel each for the total loss, the masked-expression loss, the MVC loss and the
    discriminators' accuracies, training and validation curves per epoch; panels whose
    values were not logged are left out.

    Parameters
    ----------
    history
        ``model.history`` of a trained CancerGPT model (scvi-tools' per-epoch logs).
    path
        Where to save the figure (PNG); ``None`` only returns it.

    Returns
    -------
    The figure.
    """
    import matplotlib.pyplot as plt

    panels = {
        "total loss": ["train_loss_epoch", "train_loss", "validation_loss"],
        "masked expression (MSE)": ["mlm_loss_train", "mlm_loss_validation"],
        "MVC (MSE)": ["mvc_loss_train", "mvc_loss_validation"],
        "discriminator accuracy": [k for k in history if k.startswith("disc_acc_")],
    }
    panels = {t: [k for k in keys if k in history] for t, keys in panels.items()}
    panels = {t: keys for t, keys in panels.items() if keys}
    if not panels:
        raise ValueError("The history holds no CancerGPT losses; train the model first.")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items(), strict=True):
        for key in keys:
            series = history[key].iloc[:, 0].astype(float)
            ax.plot(series.index, series.to_numpy(), marker="o", ms=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
