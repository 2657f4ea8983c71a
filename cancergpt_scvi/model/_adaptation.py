"""Adapting a pretrained CancerGPT to new cells without labels: continued self-supervision."""

from __future__ import annotations

from typing import Self

import anndata as ad
import torch

from cancergpt_scvi.data import gene_symbols

from ._mudata import expression_layer, refuse_mudata

# parameters tied to the reference's own batch / technology categories: the query's are new
_DOMAIN_SPECIFIC = ("adversary.", "decoder_domains.")


class QueryAdaptationMixin:
    """:meth:`adapt` of :class:`~cancergpt_scvi.model.CancerGPTModel`."""

    def adapt(
        self,
        adata: ad.AnnData,
        batch_key: str | None = None,
        max_epochs: int = 10,
        mvc_start: float = 0.0,
        mvc_ramp: float = 0.0,
        **train_kwargs,
    ) -> Self:
        """A copy of this model trained further, without labels, on new cells (a query).

        The pretrained encoder and decoders are copied into a new model set up on ``adata``
        (with ``batch_key`` as its batch covariate), which then continues the pretraining
        objective (masked expression and MVC) on those cells only, as scVI and Harmony see the
        cells they integrate. This model is left as it is. The parts tied to this model's own
        batches and technologies (the adversary's discriminators and the decoders' domain
        terms) start afresh, since the new cells' categories are others.

        Parameters
        ----------
        adata
            The new cells, with this model's input genes in its order
            (``adata[:, model.input_genes_]`` when set up with ``var_names`` as symbols) and
            the same kind of expression as the training data, in ``X`` or the layer this
            model was set up with. Registered here with :meth:`setup_anndata`.
        batch_key
            ``obs`` column of the new cells' batches (patients, samples).
        max_epochs
            Epochs of continued training.
        mvc_start, mvc_ramp
            As in :meth:`train`; default 0: the MVC objective the model was pretrained to the
            end with, from the first step.
        **train_kwargs
            Other arguments of :meth:`train` (``lr``, ``batch_size``, ``enable_progress_bar``).

        Returns
        -------
        The adapted model, whose :meth:`get_latent_representation` embeds the new cells (and
        any other cells with the same genes).
        """
        refuse_mudata(adata, "adapt")
        setup = self.registry_["setup_args"]
        symbols = [str(g) for g in gene_symbols(adata, setup["gene_symbols_key"])]
        if symbols != list(self.input_genes_):
            raise ValueError(
                f"adata has {len(symbols)} genes, not this model's {len(self.input_genes_)} "
                "input genes in their order; adapt to adata[:, model.input_genes_] (genes "
                "absent from the new cells can be added as zero columns)."
            )
        type(self).setup_anndata(
            adata,
            layer=expression_layer(setup),
            batch_key=batch_key,
            gene_symbols_key=setup["gene_symbols_key"],
        )
        init = self.init_params_
        params = {k: v for k, v in init["non_kwargs"].items() if k != "gene_embedding_init"}
        module_kwargs = dict(init["kwargs"].get("module_kwargs", {}))
        adapted = type(self)(adata, gene_embedding_init="random", **params, **module_kwargs)
        target = adapted.module.state_dict()
        weights = {
            name: value
            for name, value in self.module.state_dict().items()
            if not name.startswith(_DOMAIN_SPECIFIC)
            and name in target
            and target[name].shape == value.shape
        }
        missing = [n for n in target if not n.startswith(_DOMAIN_SPECIFIC) and n not in weights]
        if missing:  # same genes and config: every encoder weight must carry over
            raise RuntimeError(f"Weights that did not carry over: {missing[:5]}.")
        with torch.no_grad():
            adapted.module.load_state_dict(weights, strict=False)
        adapted.train(max_epochs=max_epochs, mvc_start=mvc_start, mvc_ramp=mvc_ramp, **train_kwargs)
        return adapted
