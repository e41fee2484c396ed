"""candle_lib's CSV loaders: ``load_csv_data``, ``load_Xy_data_noheader``, ``load_Xy_one_hot_data2``.

Same signatures, return shapes and order of rows and columns as candle_lib. Scaling ('maxabs',
'minmax', anything else: standardization) is computed with numpy, ignoring missing values, as
scikit-learn's scalers do.
"""

import numpy as np
import pandas as pd

DEFAULT_SEED = 7102
DEFAULT_DATATYPE = np.float32


def to_categorical(y, num_classes=None):
    """Class indices -> one-hot rows (float32), as Keras' to_categorical."""
    y = np.array(y, dtype="int")
    shape = y.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = tuple(shape[:-1])
    y = y.ravel()
    num_classes = int(num_classes or (np.max(y) + 1))
    onehot = np.zeros((y.shape[0], num_classes), dtype=np.float32)
    onehot[np.arange(y.shape[0]), y] = 1
    return onehot.reshape(shape + (num_classes,))


def scale_array(mat, scaling=None):
    """Scale the columns of ``mat``: 'maxabs' to [-1, 1], 'minmax' to [0, 1], else to mean 0 and std 1."""
    if scaling is None or str(scaling).lower() == "none":
        return mat
    mat = np.asarray(mat)
    if mat.dtype.kind != "f":
        mat = mat.astype(np.float64)
    wide = mat.astype(np.float64)  # statistics in double precision, results in the data's precision
    with np.errstate(invalid="ignore", divide="ignore"):
        if scaling == "maxabs":
            top = np.nanmax(np.abs(wide), axis=0)
            return (wide / np.where(top > 0, top, 1.0)).astype(mat.dtype)
        if scaling == "minmax":
            low, high = np.nanmin(wide, axis=0), np.nanmax(wide, axis=0)
            span = high - low
            return ((wide - low) / np.where(span > 0, span, 1.0)).astype(mat.dtype)
        mean, std = np.nanmean(wide, axis=0), np.nanstd(wide, axis=0)
        return ((wide - mean) / np.where(std > 0, std, 1.0)).astype(mat.dtype)


def load_Xy_data_noheader(train_file, test_file, classes, usecols=None, scaling=None,  # noqa: N802
                          dtype=DEFAULT_DATATYPE):
    """Headerless CSVs whose first column is the class: returns X_train, Y_train (one-hot), X_test, Y_test.

    Train and test features are scaled together.
    """
    train = pd.read_csv(train_file, header=None, usecols=usecols).values.astype(dtype)
    test = pd.read_csv(test_file, header=None, usecols=usecols).values.astype(dtype)
    y_train = to_categorical(train[:, 0].astype("int"), classes)
    y_test = to_categorical(test[:, 0].astype("int"), classes)
    both = np.concatenate((train[:, 1:], test[:, 1:]), axis=0).astype(dtype)
    both = scale_array(both, scaling)
    return both[: train.shape[0], :], y_train, both[train.shape[0]:, :], y_test


def load_Xy_one_hot_data2(train_file, test_file, class_col=None, drop_cols=None, n_cols=None,  # noqa: N802
                          shuffle=False, scaling=None, validation_split=0.1, dtype=DEFAULT_DATATYPE,
                          seed=DEFAULT_SEED):
    """CSVs with a header: the column ``class_col`` one-hot encoded as y, the rest (minus ``drop_cols``) as X.

    Returns ``(X_train, y_train), (X_val, y_val), (X_test, y_test)``; the validation set is the first
    ``validation_split`` share of the training rows. ``n_cols`` keeps only the first columns.
    """
    if class_col is None:
        raise ValueError("load_Xy_one_hot_data2 needs class_col, the name of the class column")
    drop_cols = list(drop_cols or [])
    usecols = list(range(n_cols + len(drop_cols))) if n_cols else None
    train = pd.read_csv(train_file, engine="c", usecols=usecols)
    test = pd.read_csv(test_file, engine="c", usecols=usecols)
    if shuffle:
        train = train.sample(frac=1, random_state=seed)
        test = test.sample(frac=1, random_state=seed)
    y_train = pd.get_dummies(train[class_col]).values
    y_test = pd.get_dummies(test[class_col]).values
    train = train.drop(columns=drop_cols)
    test = test.drop(columns=drop_cols)
    x_train = train.values.astype(dtype)
    x_test = test.values.astype(dtype)
    both = scale_array(np.concatenate((x_train, x_test), axis=0), scaling)
    n_train = x_train.shape[0]
    n_val = int(n_train * validation_split)
    return ((both[n_val:n_train, :], y_train[n_val:n_train, :]), (both[:n_val, :], y_train[:n_val, :]),
            (both[n_train:, :], y_test))


def load_csv_data(train_path, test_path=None, sep=",", nrows=None, x_cols=None, y_cols=None, drop_cols=None,
                  onehot_cols=None, n_cols=None, random_cols=False, shuffle=False, scaling=None, dtype=None,
                  validation_split=None, return_dataframe=True, return_header=False, seed=DEFAULT_SEED):
    """Load training (and test) CSVs into x/y parts, optionally one-hot, scaled and with a validation split.

    Returns, in this order and only those that apply: x_train, y_train (when ``y_cols``), x_val, y_val
    (when ``0 < validation_split < 1``; the last rows of the training set), x_test, y_test (when
    ``test_path``), and with ``return_header`` the x and y column names. DataFrames, or arrays when
    ``return_dataframe`` is False. A single result is returned as such, not as a tuple.
    """
    y_names = None
    usecols = None
    if x_cols is not None or drop_cols is not None or n_cols is not None:
        header = pd.read_csv(train_path, engine="c", sep=sep, nrows=0)
        x_header = header.copy()
        if y_cols is not None:
            x_header = x_header.drop(header[y_cols], axis=1)
        if drop_cols is not None:
            x_header = x_header.drop(header[drop_cols], axis=1)
        reserved = list(onehot_cols or []) + list(x_cols or [])
        n_x = x_header.shape[1]
        if n_cols and n_cols < n_x:
            if random_cols:
                positions = sorted(np.random.choice(list(range(n_x)), n_cols, replace=False))
            else:
                positions = list(range(n_cols))
            chosen = list(x_header.columns[positions])
            unreserved = [name for name in chosen if name not in reserved]
            keep = reserved + unreserved[: max(n_cols - len(reserved), 0)]
            x_names = [name for name in x_header.columns if name in keep]
        elif x_cols is not None:
            x_names = list(x_header[x_cols])
        else:
            x_names = list(x_header.columns)
        usecols = x_names
        if y_cols is not None:
            y_names = list(header[y_cols])
            usecols = y_names + x_names

    train = pd.read_csv(train_path, engine="c", sep=sep, nrows=nrows, usecols=usecols)
    test = pd.read_csv(test_path, engine="c", sep=sep, nrows=nrows, usecols=usecols) if test_path else train[0:0].copy()
    if y_cols is None:
        y_names = []
    elif y_names is None:
        y_names = list(train[0:0][y_cols])
    if shuffle:
        train = train.sample(frac=1, random_state=seed)
        if test_path:
            test = test.sample(frac=1, random_state=seed)

    both = pd.concat([train, test])
    df_y = both[y_names]
    df_x = both.drop(y_names, axis=1)
    for column in onehot_cols or []:
        if column in y_names:
            dummies = pd.get_dummies(df_y[column], prefix=column, prefix_sep=":")
            df_y = pd.concat([dummies, df_y.drop(column, axis=1)], axis=1)
        else:
            dummies = pd.get_dummies(df_x[column], prefix=column, prefix_sep=":")
            df_x = pd.concat([dummies, df_x.drop(column, axis=1)], axis=1)
    if scaling is not None:
        df_x = pd.DataFrame(scale_array(df_x.values, scaling), index=df_x.index, columns=df_x.columns, dtype=dtype)

    n_train = train.shape[0]
    x_train, y_train = df_x[:n_train], df_y[:n_train]
    x_test, y_test = df_x[n_train:], df_y[n_train:]
    with_y = y_cols is not None
    with_val = bool(validation_split) and 0 < validation_split < 1
    result = [x_train]
    if with_y:
        result.append(y_train)
    if with_val:
        n_val = int(n_train * validation_split)
        result = [x_train[:-n_val]] + ([y_train[:-n_val]] if with_y else [])
        result.append(x_train[-n_val:])
        if with_y:
            result.append(y_train[-n_val:])
    if test_path:
        result.append(x_test)
        if with_y:
            result.append(y_test)
    if not return_dataframe:
        result = [part.values for part in result]
    if return_header:
        result += [df_x.columns.tolist(), df_y.columns.tolist()]
    return tuple(result) if len(result) > 1 else result
