"""candle_lib's PyTorch helpers. Imported on first use of one of these names, and only then imports torch.

Same names and signatures as candle_lib. Where candle_lib's version cannot work (``sgd`` asks torch for
an optimizer it does not have, ``he_normal`` draws uniformly, an unknown name silently returns None),
these do what the name says and raise a ValueError listing the choices.
"""

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from ._ckpt import CandleCkpt
from ._helpers import keras_default_config, set_seed


def set_pytorch_threads():
    """Kept for compatibility (candle_lib's is empty); thread counts come from set_parallelism_threads()."""


def set_pytorch_seed(seed):
    """Seed Python, numpy and torch."""
    set_seed(seed)
    torch.manual_seed(int(seed))


_LOSSES = {
    "mse": torch.nn.MSELoss,
    "binary_crossentropy": torch.nn.BCELoss,
    "categorical_crossentropy": torch.nn.CrossEntropyLoss,
    "smoothL1": torch.nn.SmoothL1Loss,
}


def get_pytorch_function(name):
    """A torch loss module by its Keras name: mse, binary_crossentropy, categorical_crossentropy, smoothL1."""
    if name not in _LOSSES:
        raise ValueError("no PyTorch loss for %r; choose one of %s" % (name, ", ".join(_LOSSES)))
    return _LOSSES[name]()


_ACTIVATIONS = {
    "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU,
    "selu": torch.nn.SELU, "leaky_relu": torch.nn.LeakyReLU, "gelu": torch.nn.GELU,
    "softplus": torch.nn.Softplus, "linear": torch.nn.Identity,
}


def build_pytorch_activation(activation):
    """A torch activation module by name (relu, sigmoid, tanh, and elu, selu, leaky_relu, gelu, ...)."""
    if activation not in _ACTIVATIONS:
        raise ValueError("no PyTorch activation %r; choose one of %s" % (activation, ", ".join(_ACTIVATIONS)))
    return _ACTIVATIONS[activation]()


def build_pytorch_optimizer(model, optimizer, lr, kerasDefaults, trainable_only=True):  # noqa: N803
    """A torch optimizer for ``model`` by Keras name, with Keras' default constants (keras_default_config()).

    sgd (momentum_sgd, nesterov_sgd), rmsprop (rho, epsilon), adagrad, adadelta, adam, adamax, nadam,
    adamw. With ``trainable_only`` only parameters that require gradients are optimized.
    """
    defaults = dict(keras_default_config())
    defaults.update(kerasDefaults or {})
    params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    lr = float(lr)
    eps, betas = defaults["epsilon"], (defaults["beta_1"], defaults["beta_2"])
    name = str(optimizer).lower()
    if name == "sgd":
        momentum = float(defaults["momentum_sgd"])
        return torch.optim.SGD(params, lr=lr, momentum=momentum,
                               nesterov=bool(defaults["nesterov_sgd"]) and momentum > 0)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=defaults["rho"], eps=eps)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=defaults["rho"], eps=eps)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, betas=betas, eps=eps)
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps)
    raise ValueError("no PyTorch optimizer %r; choose sgd, rmsprop, adagrad, adadelta, adam, adamax, nadam "
                     "or adamw" % (optimizer,))


def pytorch_initialize(weights, initializer, kerasDefaults, seed=None, constant=0.0):  # noqa: N803
    """Initialize the tensor ``weights`` in place by Keras initializer name; returns it.

    constant, uniform, normal (Keras' default bounds), glorot_uniform, glorot_normal, lecun_uniform,
    he_normal, he_uniform. ``seed`` is accepted for compatibility (seed torch with set_pytorch_seed).
    """
    defaults = dict(keras_default_config())
    defaults.update(kerasDefaults or {})
    init = torch.nn.init
    with torch.no_grad():
        if initializer == "constant":
            return init.constant_(weights, float(constant))
        if initializer == "uniform":
            return init.uniform_(weights, a=defaults["minval_uniform"], b=defaults["maxval_uniform"])
        if initializer == "normal":
            return init.normal_(weights, mean=defaults["mean_normal"], std=defaults["stddev_normal"])
        if initializer == "glorot_uniform":
            return init.xavier_uniform_(weights)
        if initializer == "glorot_normal":
            return init.xavier_normal_(weights)
        if initializer == "he_normal":
            return init.kaiming_normal_(weights, nonlinearity="relu")
        if initializer == "he_uniform":
            return init.kaiming_uniform_(weights, nonlinearity="relu")
        if initializer == "lecun_uniform":
            fan_in = weights.shape[1] * weights[0][0].numel() if weights.dim() > 1 else weights.shape[0]
            limit = (3.0 / fan_in) ** 0.5
            return init.uniform_(weights, a=-limit, b=limit)
    raise ValueError("no initializer %r; choose constant, uniform, normal, glorot_uniform, glorot_normal, "
                     "lecun_uniform, he_normal or he_uniform" % (initializer,))


def pytorch_xent(y_true, y_pred):
    """Cross entropy of logits ``y_pred`` against class indices ``y_true`` (candle_lib's argument order)."""
    return F.cross_entropy(y_pred, y_true)


def pytorch_mse(y_true, y_pred):
    return F.mse_loss(y_pred, y_true)


class CandleCkptPyTorch(CandleCkpt):
    """Checkpoint/restart for a PyTorch training loop (see :mod:`._ckpt` for the parameters and layout).

    Usage, as in candle_lib::

        ckpt = candle.CandleCkptPyTorch(params)
        ckpt.set_model({"model": model, "optimizer": optimizer})
        J = ckpt.restart(model)
        initial_epoch = J["epoch"] if J is not None else 0
        for epoch in range(initial_epoch, params["epochs"]):
            ...train...
            ckpt.ckpt_epoch(epoch, val_loss)
    """

    def __init__(self, gParams, logger="DEFAULT", verbose=True):  # noqa: N803
        super().__init__(gParams, logger, verbose)

    def set_model(self, model):
        """``model``: ``{"model": torch.nn.Module, "optimizer": torch.optim.Optimizer}``."""
        if not isinstance(model, dict) or "model" not in model:
            raise TypeError("CandleCkptPyTorch.set_model takes {'model': module, 'optimizer': optimizer}")
        self.model = model

    def ckpt_epoch(self, epoch, metric_value):
        """Call after each epoch (0-based ``epoch``); a lower ``metric_value`` is better."""
        super().ckpt_epoch(epoch, "-", metric_value)

    def write_model_backend(self, model, epoch):
        optimizer = self.model.get("optimizer")
        torch.save({"epoch": epoch, "model_state_dict": self.model["model"].state_dict(),
                    "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else None,
                    "loss": 0}, self.model_file)

    def build_model(self, model_file):
        if self.model is None:
            raise RuntimeError("call set_model({'model': ..., 'optimizer': ...}) before restart()")
        state = torch.load(model_file, map_location="cpu")
        self.model["model"].load_state_dict(state["model_state_dict"])
        optimizer = self.model.get("optimizer")
        if optimizer is not None and state.get("optimizer_state_dict") is not None:
            optimizer.load_state_dict(state["optimizer_state_dict"])
