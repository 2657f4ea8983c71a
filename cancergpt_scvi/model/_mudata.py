"""MuData for a CancerGPT model: its RNA modality is the cells' expression."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
from mudata import MuData
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalObsField, MuDataLayerField

from cancergpt_scvi._constants import BATCH_KEY, TECHNOLOGY_KEY, TISSUE_KEY, X_KEY
from cancergpt_scvi._listing import listing
from cancergpt_scvi.data import (
    check_categorical_obs,
    check_expression,
)

#: The modality a MuData's expression is read from unless told otherwise.
RNA_MODALITY = "rna"

# setup_mudata's arguments that may name a modality, and the registry key of each covariate
_COVARIATES = {"batch_key": BATCH_KEY, "technology_key": TECHNOLOGY_KEY, "tissue_key": TISSUE_KEY}
_MODALITY_ARGUMENTS = ("rna_layer", *_COVARIATES)


def rna_modality(mdata: MuData, modality: str = RNA_MODALITY) -> ad.AnnData:
    """The AnnData of a MuData's RNA modality, checked to hold every cell of ``mdata`` in order.

    The model's embedding of ``mdata`` is one row per cell of ``mdata`` (for
    ``mdata.obsm``), read from this modality: it must hold the same cells in the same order.

    Parameters
    ----------
    mdata
        Cells with several modalities.
    modality
        Name of the modality holding the gene expression.

    Raises
    ------
    KeyError
        ``mdata`` has no modality ``modality``; the message names the ones it has.
    ValueError
        The modality does not hold exactly the cells of ``mdata``, in its order.
    """
    if modality not in mdata.mod:
        raise KeyError(
            f"The MuData has no modality {modality!r} (its modalities: "
            f"{listing(list(mdata.mod)) or 'none'}). Name the one holding the gene expression: "
            "modalities={'rna_layer': name} in setup_mudata, modality=name in load_pretrained, "
            "--modality name on the command line; or embed mdata.mod[name] itself."
        )
    return _aligned(mdata, modality)


def _aligned(mdata: MuData, modality: str) -> ad.AnnData:
    """``mdata.mod[modality]``, refused unless it holds the cells of ``mdata`` in order."""
    data = mdata.mod[modality]
    if not data.obs_names.equals(mdata.obs_names):
        n_shared = int(mdata.obs_names.isin(data.obs_names).sum())
        raise ValueError(
            f"The modality {modality!r} holds {data.n_obs} cells, {n_shared} of the MuData's "
            f"{mdata.n_obs} cells, not all of them in its order; the model reads one row per "
            f"cell of the MuData from it. Keep the modality's cells (mdata = "
            f"mdata[mdata.mod[{modality!r}].obs_names].copy()) or embed its AnnData alone."
        )
    return data


def refuse_mudata(data: object, method: str, mudata_route: str | None = None) -> None:
    """Refuse a MuData where an AnnData is expected, naming the way to go instead.

    Parameters
    ----------
    data
        What was passed.
    method
        The method that takes an AnnData, for the message.
    mudata_route
        The call that takes the MuData itself, if there is one.

    Raises
    ------
    TypeError
        ``data`` is a MuData.
    """
    if isinstance(data, MuData):
        route = f"Register the MuData with {mudata_route}, or pass" if mudata_route else "Pass"
        raise TypeError(
            f"{method} takes an AnnData; this is a MuData (modalities: "
            f"{listing(list(data.mod)) or 'none'}). {route} the AnnData of its RNA modality "
            "(mdata.mod['rna'])."
        )


def expression_layer(setup_args: Mapping) -> str | None:
    """The layer a model reads expression from: ``layer`` of setup_anndata, ``rna_layer`` of
    setup_mudata (``None``: ``X``)."""
    return setup_args["rna_layer"] if "rna_layer" in setup_args else setup_args["layer"]


def registered_rna_modality(setup_args: Mapping) -> str:
    """The RNA modality a model reads a MuData's expression from: the one it was registered
    with by setup_mudata, else ``"rna"``."""
    modalities = setup_args.get("modalities") or {}
    return modalities.get("rna_layer") or RNA_MODALITY


def _modality_map(mdata: MuData, modalities: Mapping[str, str | None] | None) -> dict:
    """Each argument's modality; the RNA layer's defaults to ``"rna"``, a covariate's to
    ``None`` (``mdata.obs``), as in scvi-tools."""
    modalities = dict(modalities or {})
    unknown = sorted(set(modalities) - set(_MODALITY_ARGUMENTS))
    if unknown:
        raise ValueError(
            f"modalities names {listing(unknown)}, which are not arguments that read a "
            f"modality; its keys may be {listing(list(_MODALITY_ARGUMENTS))}."
        )
    mapped = {name: modalities.get(name) for name in _MODALITY_ARGUMENTS}
    if mapped["rna_layer"] is None:
        mapped["rna_layer"] = RNA_MODALITY
    for name, modality in mapped.items():
        # a missing RNA modality is refused by rna_modality, which says how to name one
        if name != "rna_layer" and modality is not None and modality not in mdata.mod:
            raise KeyError(
                f"modalities[{name!r}]={modality!r} is not a modality of the MuData (its "
                f"modalities: {listing(list(mdata.mod)) or 'none'})."
            )
    return mapped


def _check_covariate(mdata: MuData, argument: str, key: str | None, modality: str | None) -> None:
    """Refuse a covariate column that is not where ``modalities`` says, naming where it is."""
    if key is None:
        return
    holder = mdata if modality is None else _aligned(mdata, modality)
    if key not in holder.obs.columns:
        where = "mdata.obs" if modality is None else f"mdata[{modality!r}].obs"
        found = [name for name, data in mdata.mod.items() if key in data.obs.columns]
        hint = (
            f" It is a column of the modality {listing(found)}: pass "
            f"modalities={{{argument!r}: {found[0]!r}}}."
            if found and modality is None
            else ""
        )
        raise KeyError(
            f"{argument}={key!r} is not a column of {where} (columns: "
            f"{list(holder.obs.columns)}).{hint}"
        )
    check_categorical_obs(holder, key, argument)


class MuDataSetupMixin:
    """:meth:`setup_mudata` of :class:`~cancergpt_scvi.model.CancerGPTModel`, and the RNA
    modality of a registered or given MuData."""

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        rna_layer: str | None = None,
        batch_key: str | None = None,
        technology_key: str | None = None,
        tissue_key: str | None = None,
        gene_symbols_key: str | None = None,
        modalities: Mapping[str, str | None] | None = None,
        **kwargs,
    ) -> None:
        """Register a MuData for CancerGPT: the fields of :meth:`setup_anndata`, per modality.

        The expression is read from the RNA modality; the batch, technology and tissue
        covariates from the modality ``modalities`` names for each, or from ``mdata.obs``.
        Every modality read must hold the cells of ``mdata`` in its order, so that the
        embedding (one row per cell) can go to ``mdata.obsm``.

        Parameters
        ----------
        mdata
            Cells with several modalities, one of them gene expression (raw counts or other
            non-negative values).
        rna_layer
            Layer of the RNA modality with the expression; ``None`` uses its ``X``.
        batch_key
            ``obs`` column of the batch (sample, patient, study): an adversarial covariate.
        technology_key
            ``obs`` column of the sequencing technology: an adversarial covariate and an
            oversampling stratum.
        tissue_key
            ``obs`` column of the tissue of origin: drives oversampling of rare tissues.
        gene_symbols_key
            ``var`` column of the RNA modality with gene symbols, when its ``var_names`` are
            not symbols.
        modalities
            The modality each argument reads, e.g. ``{"rna_layer": "rna", "batch_key":
            "rna"}``. ``rna_layer`` defaults to ``"rna"``; a covariate not named here is a
            column of ``mdata.obs``.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Raises
        ------
        TypeError
            ``mdata`` is an AnnData (use :meth:`setup_anndata`).
        KeyError
            No RNA modality (the message names the modalities there are), a modality named
            in ``modalities`` is missing, or a layer or column is not where it is looked for.
        ValueError
            A modality read does not hold the cells of ``mdata`` in order, or the cells,
            genes or expression are refused as by :meth:`setup_anndata`.

        Examples
        --------
        >>> CancerGPTModel.setup_mudata(
        ...     mdata, batch_key="batch", modalities={"rna_layer": "rna", "batch_key": "rna"}
        ... )
        >>> model = CancerGPTModel(mdata)
        >>> mdata.obsm["X_cancergpt"] = model.get_latent_representation()
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if not isinstance(mdata, MuData):
            raise TypeError(
                f"setup_mudata takes a MuData, got {type(mdata).__name__}; register an AnnData "
                "with CancerGPTModel.setup_anndata."
            )
        mapped = _modality_map(mdata, modalities)
        rna = rna_modality(mdata, mapped["rna_layer"])
        if rna.n_obs == 0:
            raise ValueError("mdata has no cells (n_obs == 0); pass a MuData with cells.")
        if rna.n_vars == 0:
            raise ValueError(f"The modality {mapped['rna_layer']!r} has no genes.")
        check_expression(rna, rna_layer)
        for argument, key in (
            ("batch_key", batch_key),
            ("technology_key", technology_key),
            ("tissue_key", tissue_key),
        ):
            _check_covariate(mdata, argument, key, mapped[argument])
        if gene_symbols_key is not None and gene_symbols_key not in rna.var.columns:
            raise KeyError(
                f"gene_symbols_key={gene_symbols_key!r} is not a column of "
                f"mdata[{mapped['rna_layer']!r}].var (columns: {list(rna.var.columns)})."
            )
        keys = {"batch_key": batch_key, "technology_key": technology_key, "tissue_key": tissue_key}
        mudata_fields = [
            MuDataLayerField(
                X_KEY,
                rna_layer,
                mod_key=mapped["rna_layer"],
                is_count_data=False,
                mod_required=True,
            ),
            *(
                MuDataCategoricalObsField(registry_key, keys[argument], mod_key=mapped[argument])
                for argument, registry_key in _COVARIATES.items()
            ),
        ]
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    def _expression_adata(self, data: ad.AnnData | MuData | None) -> ad.AnnData | None:
        """The AnnData of ``data``'s expression: ``data`` itself, or a MuData's RNA modality
        (the one registered with :meth:`setup_mudata`, else ``"rna"``)."""
        if not isinstance(data, MuData):
            return data
        return rna_modality(data, registered_rna_modality(self.registry_["setup_args"]))
