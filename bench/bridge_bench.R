# The R side of bench/bridge_bench.py: the same human-in-the-loop calls, made from Rscript.
#   Rscript bench/bridge_bench.R SPACE SETTINGS_JSON DESIGN_SIZE PROPOSALS SEED
# Prints one line of JSON: the seconds each propose+tell round took.
args <- commandArgs(trailingOnly = TRUE)
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
source(file.path(root, "R", "candle_mbo.R"))
space <- args[1]; settings <- args[2]; n <- as.integer(args[3]); rounds <- as.integer(args[4]); seed <- as.integer(args[5])
invisible(cm_setup(space, settings))
y_of <- function(id) ((id * 37) %% 101) / 128  # exact in 15 digits: both sides tell identical values
design <- jsonlite::fromJSON(cm_design(n, seed), simplifyVector = FALSE)
items <- lapply(design, function(p) list(id = p$id, y = y_of(p$id)))
invisible(cm_tell(as.character(jsonlite::toJSON(items, auto_unbox = TRUE, digits = NA))))
times <- numeric(rounds)
for (i in seq_len(rounds)) {
  t0 <- proc.time()[["elapsed"]]
  props <- jsonlite::fromJSON(cm_propose(1L, seed + i), simplifyVector = FALSE)
  items <- lapply(props, function(p) list(id = p$id, y = y_of(p$id)))
  invisible(cm_tell(as.character(jsonlite::toJSON(items, auto_unbox = TRUE, digits = NA))))
  times[i] <- proc.time()[["elapsed"]] - t0
}
cat(as.character(jsonlite::toJSON(times, digits = NA)), "\n")
