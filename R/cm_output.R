# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Output: package versions, messages for the Python log, the saved optimization path.

cm_versions <- function() {
  pkgs <- c("mlrMBO", "smoof", "mlr", "ParamHelpers", "DiceKriging", "randomForest")
  paste(sprintf("%s %s", pkgs, vapply(pkgs, function(p) as.character(packageVersion(p)), "")), collapse = ", ")
}

cm_take_log <- function() {
  messages <- cm$log
  cm$log <- character(0)
  cm_to_json(I(messages))
}

# Saves the mlrMBO optimization path (as an OptPath object and as a data frame), the searched space,
# its constants and the exact design rows to an .rds file (R/mbo_reference.R reads the design there).
cm_save_path <- function(file) {
  if (is.null(cm$state)) return(FALSE)
  op <- mlrMBO:::getOptStateOptPath(cm$state)
  saveRDS(list(opt.path = op, data = as.data.frame(op), par.set = cm$par.set, constants = cm$constants,
               control = cm$control, design = cm$design_rows), file)
  TRUE
}
