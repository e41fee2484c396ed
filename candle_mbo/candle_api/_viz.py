"""candle_lib's plots: training histories, arrays, 2-D scatters and UQ contamination results.

Files are named as candle_lib names them. Drawing uses matplotlib's Agg backend (no display needed,
safe in worker processes); each function closes its figure, so a resident runner does not accumulate
figures run after run.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402


def _save(path):
    plt.savefig(path, bbox_inches="tight")
    plt.close()
    return path


def plot_history(out, history, metric="loss", val=True, title=None, width=8, height=6):
    """Plot ``history.history[metric]`` (and ``val_<metric>``) per epoch into ``<out>.plot.<metric>.png``."""
    plt.figure(figsize=(width, height))
    plt.plot(history.history[metric], marker="o")
    legend = ["train_%s" % metric]
    if val:
        plt.plot(history.history["val_%s" % metric], marker="d")
        legend.append("val_%s" % metric)
    plt.title(title or "model %s" % metric)
    plt.ylabel(metric)
    plt.xlabel("epoch")
    plt.legend(legend, loc="upper center")
    return _save("%s.plot.%s.png" % (out, metric))


def plot_scatter(data, classes, out, width=10, height=8):
    """Scatter the first two columns of ``data`` coloured by ``classes`` into ``<out>.png``."""
    plt.figure(figsize=(width, height))
    plt.scatter(data[:, 0], data[:, 1], c=classes, cmap=plt.get_cmap("gist_rainbow"), lw=0.5,
                edgecolor="black", alpha=0.7)
    plt.colorbar()
    return _save("%s.png" % out)


def plot_array(nparray, xlabel, ylabel, title, fname):
    """Plot a 1-D array as a line into the file ``fname``."""
    plt.figure()
    plt.plot(nparray, lw=3.0)
    plt.xlabel(xlabel)
    plt.ylabel(ylabel)
    plt.title(title)
    return _save(fname)


def plot_metrics(history, title=None, skip_ep=0, outdir=".", add_lr=False):
    """One chart per metric that has a ``val_`` twin: training and validation curves per epoch, into
    ``<outdir>/<metric>.png`` (with the learning rate on a second axis when ``add_lr`` and recorded)."""
    history_dict = history.history
    metrics = ["_".join(name.split("_")[1:]) for name in history_dict if "val" in name]
    epochs = np.asarray(getattr(history, "epoch", range(len(next(iter(history_dict.values()), []))))) + 1
    if len(epochs) <= skip_ep:
        skip_ep = 0
    shown = epochs[skip_ep:]
    paths = []
    for metric in metrics:
        train, valid = history_dict[metric][skip_ep:], history_dict["val_" + metric][skip_ep:]
        low, high = min(list(train) + list(valid)), max(list(train) + list(valid))
        margin = (high - low) * 0.1
        fig, axis = plt.subplots()
        label = " ".join(part.capitalize() for part in metric.split("_"))
        axis.plot(shown, train, color="b", marker=".", linestyle="-", linewidth=1, alpha=0.6, label=label)
        axis.plot(shown, valid, color="r", marker=".", linestyle="--", linewidth=1, alpha=0.6, label="Val " + label)
        axis.set_xlabel("Epoch")
        axis.set_ylabel(label)
        axis.set_xlim([min(shown) - 1, max(shown) + 1])
        if margin > 0:
            axis.set_ylim([low - margin, high + margin])
        if add_lr and "lr" in history_dict:
            second = axis.twinx()
            second.plot(shown, history_dict["lr"][skip_ep:], color="g", marker=".", linestyle=":", label="LR")
            second.set_ylabel("Learning rate", color="g")
            second.set_yscale("log")
        axis.grid(True)
        axis.legend(loc="best", prop={"size": 10})
        if title is not None:
            plt.title(title)
        paths.append(_save(os.path.join(str(outdir), metric + ".png")))
    return paths


def plot_contamination(y_true, y_pred, sigma, T=None, thresC=0.1, pred_name=None, figprefix=None):  # noqa: N803
    """Plot observed vs predicted values, sorted by prediction, with a +-1.28 sigma band, into
    ``<figprefix>_outTest_contamination.png`` (``_outTrain`` with the latent memberships ``T``, which also
    gives ``<figprefix>_T_contamination.png``: membership probability against absolute error)."""
    count = y_true.shape[0]
    order = np.argsort(y_pred)
    x = np.arange(count)
    if T is not None:
        normal = T[:, 0] > (1.0 - thresC)
        outlier = T[:, 1] > thresC
        band, suffix = sigma * normal, "_outTrain"
    else:
        band, suffix = sigma, "_outTest"
    size = 120
    fig = plt.figure(figsize=(24, 18))
    axis = plt.gca()
    axis.scatter(x, y_true[order], color="red", s=size)
    if T is not None:
        plt.scatter(x[outlier], y_true[outlier], color="green", s=size)
    plt.scatter(x, y_pred[order], color="orange", s=size)
    plt.fill_between(x, (y_pred - 1.28 * band)[order], (y_pred + 1.28 * band)[order], color="gray", alpha=0.5)
    plt.legend(["True", "Outlier", "Pred", "1.28 Std"] if T is not None else ["True", "Pred", "1.28 Std"],
               fontsize=28)
    plt.xlabel("Index", fontsize=38.0)
    plt.ylabel("%s Predicted" % (pred_name or ""), fontsize=38.0)
    plt.title("Contamination Results", fontsize=40)
    plt.grid()
    fig.tight_layout()
    paths = [_save("%s%s_contamination.png" % (figprefix, suffix))]
    print("Generated plot: ", paths[0])
    if T is not None:
        fig = plt.figure(figsize=(24, 18))
        axis = plt.gca()
        error = np.abs(y_true - y_pred)
        axis.scatter(error, T[:, 0], color="blue", s=size)
        axis.scatter(error, T[:, 1], color="orange", s=size)
        plt.legend(["Normal", "Heavy-Tailed"], fontsize=28)
        plt.xlabel("ABS Error", fontsize=38.0)
        plt.ylabel("Membership Probability", fontsize=38.0)
        plt.title("Contamination: Latent Variables", fontsize=40)
        plt.grid()
        fig.tight_layout()
        paths.append(_save("%s_T_contamination.png" % figprefix))
        print("Generated plot: ", paths[1])
    return paths
