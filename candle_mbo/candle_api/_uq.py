"""candle_lib's uncertainty-quantification utilities: data partitions for UQ runs, statistics of
inference files, and empirical calibration of predicted standard deviations.

Same signatures, return tuples and printed summaries as candle_lib; random draws use numpy's global
generator in the same order, so seeded runs partition the same way.
"""

import warnings

import numpy as np


def generate_index_distribution(numTrain, numTest, numValidation, params):  # noqa: N803 - candle_lib's names
    """Shuffled indices for training, validation and test: ``(indexTrain, indexValidation, indexTest)``.

    ``params`` gives one triplet: ``uq_train_fr/uq_valid_fr/uq_test_fr`` (fractions adding up to 1),
    ``uq_train_vec/uq_valid_vec/uq_test_vec`` (lists of block numbers) or
    ``uq_train_bks/uq_valid_bks/uq_test_bks`` (numbers of blocks). A set not asked for is None.
    """
    if all(k in params for k in ("uq_train_fr", "uq_valid_fr", "uq_test_fr")):
        print("Computing UQ cross-validation - Distributing by FRACTION")
        return generate_index_distribution_from_fraction(numTrain, numTest, numValidation, params)
    if all(k in params for k in ("uq_train_vec", "uq_valid_vec", "uq_test_vec")):
        print("Computing UQ cross-validation - Distributing by BLOCK LIST")
        return generate_index_distribution_from_block_list(numTrain, numTest, numValidation, params)
    if all(k in params for k in ("uq_train_bks", "uq_valid_bks", "uq_test_bks")):
        print("Computing UQ cross-validation - Distributing by BLOCK NUMBER")
        return generate_index_distribution_from_blocks(numTrain, numTest, numValidation, params)
    raise KeyError("no complete triplet uq_train_*, uq_valid_*, uq_test_* (with * one of fr, vec, bks) "
                   "in the parameters")


def _total(numTrain, numTest, numValidation, with_test):  # noqa: N803
    return numTrain + numValidation + (numTest if with_test else 0)


def generate_index_distribution_from_fraction(numTrain, numTest, numValidation, params):  # noqa: N803
    fractions = [params["uq_train_fr"], params["uq_valid_fr"], params["uq_test_fr"]]
    for name, value in zip(("uq_train_fr", "uq_valid_fr", "uq_test_fr"), fractions):
        if not 0.0 <= value <= 1.0:
            raise ValueError("%s = %s is not in [0, 1]" % (name, value))
    if abs(sum(fractions) - 1.0) > 1e-7:
        raise ValueError("uq_train_fr, uq_valid_fr and uq_test_fr add up to %s, not 1" % sum(fractions))
    total = _total(numTrain, numTest, numValidation, fractions[2] > 0)
    n_train = int(np.round(total * fractions[0]))
    n_valid = int(np.round(total * fractions[1]))
    order = np.arange(total)
    np.random.shuffle(order)
    return (order[:n_train], order[n_train:n_train + n_valid] if fractions[1] > 0 else None,
            order[n_train + n_valid:] if fractions[2] > 0 else None)


def _block_size(total, blocks):
    size = (total + blocks // 2) // blocks  # rounded integer division
    remainder = total - size * blocks
    return size, remainder


def generate_index_distribution_from_blocks(numTrain, numTest, numValidation, params):  # noqa: N803
    train, valid, test = params["uq_train_bks"], params["uq_valid_bks"], params["uq_test_bks"]
    total = _total(numTrain, numTest, numValidation, test > 0)
    size, remainder = _block_size(total, train + valid + test)
    if remainder != 0:
        print("Warning ! Requested partition does not distribute data evenly between blocks. "
              "Testing (if specified) or Validation (if specified) will use different block size.")
    order = np.arange(total)
    np.random.shuffle(order)
    n_train, n_valid = train * size, valid * size
    return (order[:n_train], order[n_train:n_train + n_valid] if valid > 0 else None,
            order[n_train + n_valid:] if test > 0 else None)


def compute_limits(numdata, numblocks, blocksize, blockn):
    """``(start, end)`` of block ``blockn``; the last block also takes what does not divide evenly."""
    start = blockn * blocksize
    end = numdata if blockn == numblocks - 1 else start + blocksize
    return start, end


def fill_array(blocklist, maxsize, numdata, numblocks, blocksize):
    """The indices of the blocks in ``blocklist``, in that order (at most ``maxsize`` of them)."""
    parts = [np.arange(*compute_limits(numdata, numblocks, blocksize, block)) for block in blocklist]
    indices = np.concatenate(parts).astype(int) if parts else np.zeros(0, dtype=int)
    return indices[:maxsize]


def generate_index_distribution_from_block_list(numTrain, numTest, numValidation, params):  # noqa: N803
    lists = [params["uq_train_vec"], params["uq_valid_vec"], params["uq_test_vec"]]
    blocks = sum(len(b) for b in lists)
    total = _total(numTrain, numTest, numValidation, len(lists[2]) > 0)
    size, remainder = _block_size(total, blocks)
    if remainder != 0:
        print("Warning ! Requested partition does not distribute data evenly between blocks. "
              "Last block will have different size.")
    remainder = max(remainder, 0)
    out = [fill_array(b, size * len(b) + remainder, total, blocks, size) if (i == 0 or len(b) > 0) else None
           for i, b in enumerate(lists)]
    return tuple(out)


def _report(y_true, y_pred):
    from scipy.stats import pearsonr

    error = y_true - y_pred
    mse = float(np.mean(error ** 2))
    print("MSE: ", mse)
    print("MSE_STD: ", float(np.std(error ** 2)))
    print("MAE: ", float(np.mean(np.abs(error))))
    total = float(np.sum((y_true - np.mean(y_true)) ** 2))
    print("R2: ", 1.0 - float(np.sum(error ** 2)) / total if total > 0 else float("nan"))
    correlation, p_value = pearsonr(y_true, y_pred)
    print("Pearson CC: %f, p-value: %e" % (correlation, p_value))


def compute_statistics_homoscedastic_summary(df_data, col_true=0, col_pred=6, col_std_pred=7):
    """From a summary inference table (mean and std of the predictions per row): ``(Ytrue, Ypred_mean,
    yerror, sigma, Ypred_std, pred_name)``; sigma is the predictions' std."""
    y_true = df_data.iloc[:, col_true].values
    y_pred = df_data.iloc[:, col_pred].values
    y_std = df_data.iloc[:, col_std_pred].values
    _report(y_true, y_pred)
    return y_true, y_pred, y_true - y_pred, y_std, y_std, df_data.columns[col_true]


def compute_statistics_homoscedastic(df_data, col_true=4, col_pred_start=6):
    """From an inference table with one column per realization from ``col_pred_start`` on: ``(Ytrue,
    Ypred_mean, yerror, sigma, Ypred_std, pred_name)``; mean and std over the realizations."""
    y_true = df_data.iloc[:, col_true].values
    predictions = df_data.iloc[:, col_pred_start:].values
    y_pred, y_std = predictions.mean(axis=1), predictions.std(axis=1)
    _report(y_true, y_pred)
    return y_true, y_pred, y_true - y_pred, y_std, y_std, df_data.columns[col_true]


def compute_statistics_heteroscedastic(df_data, col_true=4, col_pred_start=6, col_std_pred_start=7):
    """From a heteroscedastic inference table (prediction and log-variance columns alternating): ``(Ytrue,
    Ypred_mean, yerror, sigma, Ypred_std, pred_name)``; sigma = sqrt(exp(mean log-variance))."""
    y_true = df_data.iloc[:, col_true].values
    predictions = df_data.iloc[:, col_pred_start::2].values
    y_pred, y_std = predictions.mean(axis=1), predictions.std(axis=1)
    sigma = np.sqrt(np.exp(df_data.iloc[:, col_std_pred_start::2].values.mean(axis=1)))
    _report(y_true, y_pred)
    return y_true, y_pred, y_true - y_pred, sigma, y_std, df_data.columns[col_true]


def compute_statistics_quantile(df_data, sigma_divisor=2.56, col_true=4, col_pred_start=6):
    """From a quantile inference table (median, low and high decile columns repeating): ``(Ytrue,
    Ypred_mean, yerror, sigma, Ypred_std, pred_name, Ypred_Lp_mean, Ypred_Hp_mean)``; sigma is the
    interdecile range divided by ``sigma_divisor``."""
    y_true = df_data.iloc[:, col_true].values
    medians = df_data.iloc[:, col_pred_start::3].values
    low = df_data.iloc[:, col_pred_start + 1::3].values.mean(axis=1)
    high = df_data.iloc[:, col_pred_start + 2::3].values.mean(axis=1)
    y_pred = medians.mean(axis=1)
    _report(y_true, y_pred)
    return (y_true, y_pred, y_true - y_pred, (high - low) / sigma_divisor, medians.std(axis=1),
            df_data.columns[col_true], low, high)


def split_data_for_empirical_calibration(Ytrue, Ypred, sigma, cal_split=0.8):  # noqa: N803
    """Shuffle and split into a calibration share ``cal_split`` and a test share: ``(index_perm_total,
    pSigma_cal, pSigma_test, pPred_cal, pPred_test, true_cal, true_test)``."""
    total = sigma.shape[0]
    n_cal = int(total * cal_split)
    order = np.random.permutation(range(total))
    sigma, Ypred, Ytrue = sigma[order], Ypred[order], Ytrue[order]  # noqa: N806
    print("Size of calibration set: ", Ytrue[:n_cal].shape)
    print("Size of test set: ", Ytrue[n_cal:].shape)
    return order, sigma[:n_cal], sigma[n_cal:], Ypred[:n_cal], Ypred[n_cal:], Ytrue[:n_cal], Ytrue[n_cal:]


def compute_empirical_calibration_interpolation(pSigma_cal, pPred_cal, true_cal, cv=10):  # noqa: N803
    """Fit the absolute error as a smooth monotone-piecewise function of the predicted sigma.

    ``cv`` random train/test splits each fit a PCHIP interpolator to the Savitzky-Golay smoothed errors;
    the one with the lowest test MAE is returned, with a second one resampled on 200 points and
    smoothed again: ``(splineobj_best, splineobj2)``. Needs at least 21 calibration points per split.
    """
    from scipy import interpolate, signal

    x_all = np.asarray(pSigma_cal)
    error_all = np.abs(np.asarray(true_cal) - np.asarray(pPred_cal))
    n_test = int(np.ceil((1.0 / cv) * len(x_all)))  # scikit-learn's train_test_split(test_size=1/cv)
    best, best_mae = None, np.inf
    print("Using CV for selecting calibration smoothing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(cv):
            order = np.random.permutation(len(x_all))
            test, train = order[:n_test], order[n_test:]
            x_train, x_test = x_all[train], x_all[test]
            by_x = np.argsort(x_train)
            smooth = signal.savgol_filter(error_all[train][by_x], 21, 1, mode="nearest")
            spline = interpolate.PchipInterpolator(x_train[by_x], smooth, extrapolate=True)
            mae = float(np.mean(np.abs(error_all[test] - spline(x_test))))
            print("MAE: ", mae)
            if mae < best_mae:
                best, best_mae = spline, mae
        grid = np.linspace(np.min(x_all), np.max(x_all), 200)
        resampled = signal.savgol_filter(best(grid), 15, 1, mode="nearest")
        return best, interpolate.PchipInterpolator(grid, resampled, extrapolate=True)
