"""candle_lib's preprocessing for omics data: normalization, cross-validation partitions, feature
selection, gene-set summaries and ComBat batch-effect removal.

Same signatures and results as candle_lib (given the same numpy random state where randomness is
involved). Invalid input raises TypeError/ValueError where candle_lib prints and exits the process.
"""

from collections import Counter

import numpy as np
import pandas as pd


def _values(data, name):
    if isinstance(data, pd.DataFrame):
        return data.values
    if isinstance(data, np.ndarray):
        return data
    raise TypeError("%s: data must be a numpy array or a pandas DataFrame, not %s" % (name, type(data).__name__))


def quantile_normalization(data):
    """Give every sample (row) the same value distribution: the mean of the rows' sorted values.

    Missing values are filled with random draws from the same row for the computation and are missing
    again in the result. Returns the type it was given (array or DataFrame).
    """
    from scipy.stats import rankdata

    values = _values(data, "quantile_normalization")
    normed = np.array(values, dtype=float, copy=True)
    missing = np.isnan(normed)
    if missing.any():
        for row in np.flatnonzero(missing.any(axis=1)):
            holes = missing[row]
            normed[row, holes] = np.random.choice(normed[row, ~holes], size=holes.sum(), replace=True)
    reference = np.mean(np.sort(normed, axis=1), axis=0)
    positions = rankdata(normed, axis=1).astype(int) - 1
    normed = reference[positions]
    normed[missing] = np.nan
    if isinstance(data, pd.DataFrame):
        return pd.DataFrame(normed, columns=data.columns, index=data.index)
    return normed


def generate_cross_validation_partition(group_label, n_folds=5, n_repeats=1, portions=None, random_seed=None):
    """Sample indices for ``n_folds``-fold cross-validation, repeated ``n_repeats`` times.

    Samples sharing a group label stay in one fold; groups are assigned, largest first, to the fold with
    the fewest samples so far. Each trial splits the folds into ``len(portions)`` sets of
    ``portions[i]`` consecutive folds (default ``[1, n_folds - 1]``). The first repetition keeps the
    groups' order unless ``random_seed`` is given. Returns ``n_folds * n_repeats`` lists of index lists.
    """
    counts = Counter(group_label)
    labels = list(counts)
    if len(labels) < n_folds:
        raise ValueError("%d groups cannot fill %d folds; use fewer folds" % (len(labels), n_folds))
    by_size = np.array(sorted(labels, key=lambda label: counts[label], reverse=True))
    portions = [1, n_folds - 1] if portions is None else list(portions)
    if sum(portions) != n_folds:
        raise ValueError("portions %s must add up to n_folds = %d" % (portions, n_folds))
    if random_seed is not None:
        np.random.seed(random_seed)
    group_label = np.asarray(group_label)
    trials = []
    for repeat in range(n_repeats):
        order = by_size.copy() if repeat == 0 and random_seed is None else by_size[np.random.permutation(len(labels))]
        members = [[] for _ in range(n_folds)]
        sizes = np.zeros(n_folds)
        for label in order:
            fold = int(np.argmin(sizes))
            members[fold].append(label)
            sizes[fold] += counts[label]
        folds = [[int(i) for i in np.flatnonzero(np.isin(group_label, groups))] for groups in members]
        for first in range(n_folds):
            sets, start = [], first
            for portion in portions:
                chosen = []
                for fold in range(start, start + portion):
                    chosen += folds[fold % n_folds]
                sets.append(sorted(chosen))
                start += portion
            trials.append(sets)
    return trials


def select_features_by_missing_values(data, threshold=0.1):
    """Indices (sorted) of the features (columns) whose share of missing values is below ``threshold``."""
    values = _values(data, "select_features_by_missing_values")
    missing_rate = np.sum(np.isnan(values), axis=0) / values.shape[0]
    return np.sort(np.flatnonzero(missing_rate < threshold))


def _mad(values):
    median = np.nanmedian(values, axis=0)
    return np.nanmedian(np.abs(values - median), axis=0)


def select_features_by_variation(data, variation_measure="var", threshold=None, portion=None,
                                 draw_histogram=False, bins=100, log=False):
    """Indices (sorted) of features with large variation: 'var', 'std' or 'mad' (median absolute deviation).

    Either above ``threshold``, or the ``portion`` of features that vary most; neither: an empty array.
    Missing values are ignored; features without any variation value are never selected.
    """
    values = _values(data, "select_features_by_variation")
    with np.errstate(invalid="ignore"), _quiet_nan_warnings():
        if variation_measure == "std":
            variation = np.nanstd(values, axis=0)
        elif variation_measure == "mad":
            variation = _mad(values)
        else:
            variation = np.nanvar(values, axis=0)
    present = np.flatnonzero(~np.isnan(variation))
    variation = variation[present]
    if draw_histogram:
        _histogram(variation, bins, log)
    if threshold is None and portion is None:
        return np.array([])
    if threshold is not None and portion is not None:
        raise ValueError("give threshold or portion, not both")
    if threshold is not None:
        chosen = present[variation > threshold]
    else:
        count = int(min(portion * values.shape[1], len(variation)))
        chosen = present[np.argsort(-variation)[:count]]
    return np.sort(chosen)


def _histogram(variation, bins, log):
    if len(variation) < 50:
        print("a histogram needs at least 50 features with a variation measure")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.hist(variation, bins=int(min(bins, len(variation))), log=log)
    plt.show()


class _quiet_nan_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def select_decorrelated_features(data, method="pearson", threshold=None, random_seed=None):
    """Indices (sorted) of features whose absolute pairwise correlation stays below ``threshold``.

    Walking the features in order (shuffled with ``random_seed``), each one removes the later ones it
    correlates with (``method``: pearson, kendall, spearman; pairs of observed values only). Without
    a threshold only exact duplicates are removed. Features with fewer than two values or no spread
    are never selected.
    """
    if isinstance(data, np.ndarray):
        data = pd.DataFrame(data)
    elif not isinstance(data, pd.DataFrame):
        raise TypeError("select_decorrelated_features: data must be a numpy array or a pandas DataFrame")
    present = np.flatnonzero(np.sum(~pd.isna(data).values, axis=0) > 1)
    with _quiet_nan_warnings():
        spread = np.nanstd(data.iloc[:, present].values, axis=0)
    present = present[spread > 0]
    data = data.iloc[:, present]
    count = data.shape[1]
    order = None
    if random_seed is not None:
        np.random.seed(random_seed)
        order = np.random.permutation(count)
        data = data.iloc[:, order]
    values = data.values
    if threshold is not None:
        if method == "pearson" and not pd.isna(data).values.any():
            correlation = np.corrcoef(values, rowvar=False)
        else:
            correlation = data.corr(method=method).values
    removed = np.zeros(count, dtype=bool)
    for index in range(count - 1):
        if removed[index]:
            continue
        later = np.arange(index + 1, count)
        later = later[~removed[later]]
        if len(later) == 0:
            continue
        if threshold is None:
            column = values[:, index][:, np.newaxis]
            same_gaps = np.sum(np.isnan(values[:, later]) ^ np.isnan(column), axis=0) == 0
            later = later[same_gaps]
            if len(later):
                later = later[np.nansum(np.abs(values[:, later] - column), axis=0) == 0]
        else:
            later = later[np.abs(correlation[index, later]) >= threshold]
        removed[later] = True
    kept = np.flatnonzero(~removed)
    if order is not None:
        kept = order[kept]
    return np.sort(present[kept])


def generate_gene_set_data(data, genes, gene_name_type="entrez", gene_set_category="c6.all", metric="mean",
                           standardize=False, data_dir="../../Data/examples/Gene_Sets/MSigDB.v7.0/"):
    """Summarize gene-level features per gene set of an MSigDB v7.0 .gmt file in ``data_dir``.

    ``genes[j]`` names the gene of column j ('entrez' ids or 'symbols'); ``metric``: mean, sum, max,
    min, abs_mean, abs_maximum. Returns a DataFrame with one column per gene set that has data.
    """
    import os

    values = np.array(_values(data, "generate_gene_set_data"), dtype=float)
    samples = data.index if isinstance(data, pd.DataFrame) else None
    if standardize:
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        values = (values - mean) / np.where(std > 0, std, 1.0)
    genes = np.array([str(g) for g in genes])
    suffix = {"entrez": ".v7.0.entrez.gmt", "symbols": ".v7.0.symbols.gmt"}.get(gene_name_type, "")
    gene_sets = {}
    with open(os.path.join(data_dir, gene_set_category + suffix)) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if fields and fields[0]:
                gene_sets[fields[0]] = fields[2:]
    reduce = {"sum": np.nansum, "max": np.nanmax, "min": np.nanmin,
              "abs_mean": lambda a, axis: np.nanmean(np.abs(a), axis=axis),
              "abs_maximum": lambda a, axis: np.nanmax(np.abs(a), axis=axis)}.get(metric, np.nanmean)
    summary = np.full((values.shape[0], len(gene_sets)), np.nan)
    names = list(gene_sets)
    with _quiet_nan_warnings():
        for column, name in enumerate(names):
            members = np.flatnonzero(np.isin(genes, gene_sets[name]))
            if len(members):
                summary[:, column] = reduce(values[:, members], axis=1)
    frame = pd.DataFrame(summary, columns=names, index=samples)
    return frame.iloc[:, np.flatnonzero((~pd.isna(frame)).sum(axis=0).values > 0)]


def combat_batch_effect_removal(data, batch_labels, model=None, numerical_covariates=None):
    """Remove batch effects with parametric empirical-Bayes ComBat (Johnson, Li and Rabinovic, 2007).

    ``data``: DataFrame of features x samples; ``batch_labels``: the batch of each sample (a Series
    indexed like ``data``'s columns); ``model``: optional DataFrame of covariates (samples x columns) to
    preserve, ``numerical_covariates`` naming those that are numbers. Returns the corrected DataFrame.
    """
    if isinstance(numerical_covariates, str):
        numerical_covariates = [numerical_covariates]
    numerical_covariates = list(numerical_covariates or [])
    if isinstance(batch_labels, pd.Series) and set(batch_labels.index) == set(data.columns):
        batch_labels = batch_labels.reindex(data.columns)  # match the samples by name, as candle_lib does
    if isinstance(model, pd.DataFrame):
        model = model.copy()
        model["batch"] = list(batch_labels)
    else:
        model = pd.DataFrame({"batch": list(batch_labels)}, index=data.columns)
    batches = sorted(set(model["batch"]))
    members = [np.flatnonzero(model["batch"].values == b) for b in batches]
    n_per_batch = np.array([len(m) for m in members])
    n_samples = int(n_per_batch.sum())

    covariates = model.drop(columns=["batch"])
    covariates = covariates[[c for c in covariates.columns if not (covariates[c] == 1).all()]]  # no intercept
    design = np.column_stack([(model["batch"].values == b).astype(float) for b in batches]
                             + [covariates[c].values.astype(float) for c in covariates.columns])
    n_batch = len(batches)
    values = data.values.astype(float)

    # Standardize: remove the covariate fit, scale every feature by its pooled variance.
    coefficients = np.linalg.solve(design.T @ design, design.T @ values.T)
    grand_mean = (n_per_batch / n_samples) @ coefficients[:n_batch, :]
    var_pooled = np.mean((values - (design @ coefficients).T) ** 2, axis=1)
    covariate_part = design.copy()
    covariate_part[:, :n_batch] = 0
    stand_mean = grand_mean[:, np.newaxis] + (covariate_part @ coefficients).T
    scale = np.sqrt(var_pooled)[:, np.newaxis]
    standardized = (values - stand_mean) / scale

    # Location/scale per batch and feature, shrunk towards priors shared by the features.
    batch_design = design[:, :n_batch]
    gamma_hat = np.linalg.solve(batch_design.T @ batch_design, batch_design.T @ standardized.T)
    delta_hat = [np.var(standardized[:, m], axis=1, ddof=1) for m in members]
    gamma_bar = gamma_hat.mean(axis=1)
    tau2 = gamma_hat.var(axis=1)
    gamma_star, delta_star = [], []
    for i, m in enumerate(members):
        a, b = _inverse_gamma_priors(delta_hat[i])
        g, d = _shrink(standardized[:, m], gamma_hat[i], delta_hat[i], gamma_bar[i], tau2[i], a, b)
        gamma_star.append(g)
        delta_star.append(d)
    gamma_star = np.array(gamma_star)

    adjusted = standardized.copy()
    for i, m in enumerate(members):
        adjusted[:, m] = (standardized[:, m] - (batch_design[m] @ gamma_star).T) / np.sqrt(delta_star[i])[:, None]
    return pd.DataFrame(adjusted * scale + stand_mean, index=data.index, columns=data.columns)


def _inverse_gamma_priors(delta_hat):
    mean, var = np.mean(delta_hat), np.var(delta_hat, ddof=1)
    return (2 * var + mean ** 2) / var, (mean * var + mean ** 3) / var


def _shrink(batch_data, g_hat, d_hat, g_bar, tau2, a, b, tolerance=1e-4):
    """Iterate the posterior mean (location) and variance (scale) of one batch until they settle."""
    n = np.sum(~np.isnan(batch_data), axis=1)
    g_old, d_old = g_hat.copy(), d_hat.copy()
    while True:
        g_new = (tau2 * n * g_hat + d_old * g_bar) / (tau2 * n + d_old)
        residual = np.nansum((batch_data - g_new[:, np.newaxis]) ** 2, axis=1)
        d_new = (0.5 * residual + b) / (n / 2.0 + a - 1.0)
        # candle_lib's stopping rule (relative change, signed denominator), so results agree with it
        change = max(np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if not change > tolerance:
            return g_new, d_new
