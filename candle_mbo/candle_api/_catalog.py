"""Which of candle_lib's names this layer provides, and where each one lives.

``candle`` resolves the names below lazily (``__getattr__``), so ``import candle`` loads neither a deep
learning framework nor pandas, scipy or matplotlib. The docs table (docs/user-guide.md, "candle_lib
names") is checked against this catalog by the tests.
"""

# Provided without any deep-learning framework; module imported on first use.
FRAMEWORK_FREE = {
    "_data": ["load_csv_data", "load_Xy_data_noheader", "load_Xy_one_hot_data2", "to_categorical", "scale_array"],
    "_preprocess": ["quantile_normalization", "generate_cross_validation_partition",
                    "select_features_by_missing_values", "select_features_by_variation",
                    "select_decorrelated_features", "generate_gene_set_data", "combat_batch_effect_removal"],
    "_noise": ["add_noise", "label_flip", "label_flip_correlated", "add_gaussian_noise", "add_column_noise",
               "add_cluster_noise"],
    "_uq": ["generate_index_distribution", "generate_index_distribution_from_fraction",
            "generate_index_distribution_from_blocks", "generate_index_distribution_from_block_list",
            "compute_limits", "fill_array", "compute_statistics_homoscedastic_summary",
            "compute_statistics_homoscedastic", "compute_statistics_heteroscedastic",
            "compute_statistics_quantile", "split_data_for_empirical_calibration",
            "compute_empirical_calibration_interpolation"],
    "_viz": ["plot_history", "plot_scatter", "plot_array", "plot_contamination", "plot_metrics"],
    "_ckpt": ["CandleCkpt"],
}

# Provided; importing one of them imports PyTorch.
PYTORCH = {
    "_pytorch": ["CandleCkptPyTorch", "build_pytorch_activation", "build_pytorch_optimizer",
                 "get_pytorch_function", "pytorch_initialize", "pytorch_mse", "pytorch_xent", "set_pytorch_seed",
                 "set_pytorch_threads"],
}

# Provided where TensorFlow 2 is installed (written against tf.keras).
TENSORFLOW = {
    "_keras": ["build_optimizer", "build_initializer", "TerminateOnTimeOut", "CandleRemoteMonitor", "get_function",
               "xent", "r2", "mae", "mse", "covariance", "corr", "evaluate_autoencoder", "PermanentDropout",
               "register_permanent_dropout", "LoggingCallback", "compute_trainable_params", "MultiGPUCheckpoint",
               "CandleCkptKeras", "clr_callback", "CyclicLR"],
}

# candle_lib names not provided here: install candle_lib, which `import candle` then uses instead.
CANDLE_LIB_ONLY = [
    "coxen_single_drug_gene_selection", "coxen_multi_drug_gene_selection", "Progbar", "ModelType",
    "plot_2d_density_sigma_vs_error", "plot_calibrated_std", "plot_calibration_interpolation",
    "plot_decile_predictions", "plot_density_observed_vs_predicted", "plot_histogram_error_per_sigma",
    "AbstentionAdapt_Callback", "Contamination_Callback", "abstention_acc_class_i_metric", "abstention_acc_metric",
    "abstention_class_i_metric", "abstention_loss", "abstention_metric", "acc_class_i_metric",
    "add_index_to_output", "add_model_output", "contamination_loss", "heteroscedastic_loss",
    "mae_contamination_metric", "mae_heteroscedastic_metric", "meanS_heteroscedastic_metric", "modify_labels",
    "mse_contamination_metric", "mse_heteroscedastic_metric", "quantile_loss", "quantile_metric",
    "r2_contamination_metric", "r2_heteroscedastic_metric", "sparse_abstention_acc_metric",
    "sparse_abstention_loss", "triple_quantile_loss",
]


def _index(groups):
    return {name: module for module, names in groups.items() for name in names}


LAZY = _index(FRAMEWORK_FREE)
LAZY_PYTORCH = _index(PYTORCH)
LAZY_TENSORFLOW = _index(TENSORFLOW)
