"""The parameters every CANDLE benchmark understands, with candle_lib's names, types, defaults and flags.

A benchmark's ``additional_definitions`` entry with the same name replaces the one here. Definitions
without a ``default`` key contribute nothing unless a defaults file or the command line sets them, as in
candle_lib; those with one (``train_bool``, ``verbose``, the ``ckpt_*`` family...) are always in the
parameter dict. ``ALWAYS_PRESENT`` holds what candle_lib adds after parsing when nothing set it.

One deliberate difference: ``rng_seed`` is an int on the command line (candle_lib reads it as a float,
which ``numpy.random.seed`` then refuses).
"""

from ._helpers import str2bool

DEFAULT_SEED = 7102
DEFAULT_TIMEOUT = -1


def _p(name, type_, help_, **extra):
    definition = {"name": name, "type": type_, "help": help_}
    definition.update(extra)
    return definition


COMMON_DEFINITIONS = [
    # general behaviour
    _p("config_file", str, "defaults file to read instead of the benchmark's own"),
    _p("data_type", str, "floating point precision", abv="d", choices=["f16", "f32", "f64"]),
    _p("rng_seed", int, "seed of the random number generators", abv="r"),
    _p("train_bool", str2bool, "train the model", default=True),
    _p("eval_bool", str2bool, "evaluate the model (inference)"),
    _p("timeout", int, "seconds allowed for training (-1: none)"),
    _p("gpus", int, "ids of the GPUs to use", nargs="+"),
    _p("profiling", str2bool, "turn profiling on", abv="p", default=False),
    # input and output
    _p("save_path", str, "where to save model snapshots", abv="s"),
    _p("model_name", str, "model name used in file names"),
    _p("home_dir", str, "home directory"),
    _p("train_data", str, "training data file"),
    _p("val_data", str, "validation data file"),
    _p("test_data", str, "test data file"),
    _p("output_dir", str, "where this run writes its outputs"),
    _p("data_url", str, "where the data is downloaded from"),
    _p("experiment_id", str, "experiment identifier", default="EXP000"),
    _p("run_id", str, "run identifier", default="RUN000"),
    # logging
    _p("verbose", str2bool, "more output", abv="v", default=False),
    _p("logfile", str, "log file", abv="l", default=None),
    # data preprocessing
    _p("scaling", str, "feature scaling", choices=["minabs", "minmax", "std", "none"]),
    _p("shuffle", str2bool, "shuffle the data set", default=False),
    _p("feature_subsample", int, "number of features to sample (0: all)"),
    # model architecture
    _p("dense", int, "units of the fully connected layers", nargs="+"),
    _p("conv", int, "convolution layers: filters, filter length, stride, ... per layer", nargs="+"),
    _p("locally_connected", str2bool, "locally connected layers instead of convolutions"),
    _p("activation", str, "activation of the inner layers", abv="a"),
    _p("out_activation", str, "activation of the output layer"),
    _p("lstm_size", int, "LSTM state size per layer", nargs="+"),
    _p("recurrent_dropout", float, "recurrent dropout ratio"),
    _p("dropout", float, "dropout ratio of the fully connected layers"),
    _p("pool", int, "pooling length"),
    _p("batch_normalization", str2bool, "use batch normalization"),
    # training
    _p("loss", str, "loss function"),
    _p("optimizer", str, "optimizer"),
    _p("metrics", str, "metrics to report"),
    _p("epochs", int, "number of training epochs", abv="e"),
    _p("batch_size", int, "batch size", abv="z"),
    _p("learning_rate", float, "learning rate", abv="lr"),
    _p("early_stop", str2bool, "stop early when the monitored value stops improving"),
    _p("momentum", float, "momentum of the SGD optimizer"),
    _p("initialization", str, "weight initialization",
       choices=["constant", "uniform", "normal", "glorot_uniform", "glorot_normal", "lecun_uniform",
                "he_normal"]),
    _p("val_split", float, "fraction of the data used for validation"),
    _p("train_steps", int, "training batches per epoch (0: all)"),
    _p("val_steps", int, "validation batches per epoch (0: all)"),
    _p("test_steps", int, "test batches (0: all)"),
    _p("train_samples", int, "training samples (0: all)"),
    _p("val_samples", int, "validation samples (0: all)"),
    # cyclic learning rate
    _p("clr_flag", str2bool, "use a cyclic learning rate"),
    _p("clr_mode", str, "cyclic learning rate mode", choices=["trng1", "trng2", "exp"]),
    _p("clr_base_lr", float, "cyclic learning rate: base"),
    _p("clr_max_lr", float, "cyclic learning rate: maximum"),
    _p("clr_gamma", float, "cyclic learning rate: gamma"),
    # checkpointing (see CandleCkptPyTorch / CandleCkptKeras)
    _p("ckpt_restart_mode", str, "restart from a checkpoint", default="auto",
       choices=["off", "auto", "required"]),
    _p("ckpt_checksum", str2bool, "checksum checkpoints after writing and reading", default=False),
    _p("ckpt_skip_epochs", int, "epochs before the first checkpoint", default=0),
    _p("ckpt_directory", str, "where checkpoints go (default: <output_dir>/ckpts)", default=None),
    _p("ckpt_save_best", str2bool, "keep the best model", default=True),
    _p("ckpt_save_best_metric", str, "metric that decides the best model", default="val_loss"),
    _p("ckpt_save_weights_only", str2bool, "save weights only", default=False),
    _p("ckpt_save_interval", int, "epochs between checkpoints (0: none)", default=0),
    _p("ckpt_keep_mode", str, "which checkpoints to keep", default="linear",
       choices=["linear", "exponential"]),
    _p("ckpt_keep_limit", int, "most checkpoints kept, besides the best one", default=5),
    # reserved so that a benchmark runs inside Jupyter, which passes -f <kernel file>
    _p("jupyter", str, "reserved for Jupyter's -f option", abv="f"),
]

COMMON_NAMES = frozenset(d["name"] for d in COMMON_DEFINITIONS)

# Filled in by finalize_parameters when neither a definition, the defaults file nor the command line
# gave a value (candle_lib adds rng_seed, timeout and data_type the same way). output_dir and data_dir
# are derived there.
ALWAYS_PRESENT = {
    "rng_seed": DEFAULT_SEED,
    "timeout": DEFAULT_TIMEOUT,
    "experiment_id": "EXP000",
    "run_id": "RUN000",
    "data_type": "f32",
}
