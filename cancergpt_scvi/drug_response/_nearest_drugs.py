"""The nearest-drugs rule: a drug's response from the most similar drugs' responses."""

from __future__ import annotations

import numpy as np


def nearest_drugs_average(
    responses: np.ndarray,
    similarity: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Each cell line's response to query drugs from its responses to the most similar drugs.

    For a query drug and a cell line: among the reference drugs with a response for that cell
    line and a positive similarity to the query, the ``k`` most similar (ties in column order),
    and the mean of their responses weighted by similarity. This rule predicts an unseen drug
    in :class:`~cancergpt_scvi.drug_response.DrugResponseModel` (from the predictions for its
    trained drugs) and in the nearest-drugs baseline of
    :func:`~cancergpt_scvi.benchmark.nearest_drugs_predict` (from measured responses).

    Parameters
    ----------
    responses
        ``(n_cell_lines, n_references)`` responses to the reference drugs; NaN where a cell
        line has none.
    similarity
        ``(n_queries, n_references)`` similarities in [0, 1], e.g.
        :func:`~cancergpt_scvi.drug_response.tanimoto_similarity` of Morgan fingerprints.
    k
        Most reference drugs averaged per query and cell line.
    exclude
        ``(n_queries,)`` the reference column each query may not use (itself, when the
        queries are the references: leave one drug out).

    Returns
    -------
    ``(n_cell_lines, n_queries)`` weighted means; NaN where no reference drug with a positive
    similarity has a response.
    """
    responses = np.asarray(responses, dtype=float)
    similarity = np.asarray(similarity, dtype=float)
    n_cells, n_queries = responses.shape[0], similarity.shape[0]
    out = np.full((n_cells, n_queries), np.nan)
    for j in range(n_queries):
        order = np.argsort(-similarity[j], kind="stable")
        values = responses[:, order]
        weights = similarity[j, order]
        valid = ~np.isnan(values) & (weights > 0)[None, :]
        if exclude is not None:
            valid[:, order == exclude[j]] = False
        # the k most similar references with a response, per cell line
        chosen = valid & (np.cumsum(valid, axis=1) <= k)
        total = (chosen * weights).sum(1)
        filled = np.where(valid, values, 0.0) * weights
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(total > 0, (filled * chosen).sum(1) / total, np.nan)
    return out
