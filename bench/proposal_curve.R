# Seconds for one proposal with n finished evaluations (bench/bridge_bench.py runs this).
#   Rscript bench/proposal_curve.R SPACE SETTINGS_JSON 50,100,200,400 [PENDING]
# PENDING points are handed out and not told (async mode: they are running).
args <- commandArgs(trailingOnly = TRUE)
root <- normalizePath(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), ".."))
source(file.path(root, "R", "candle_mbo.R"))
sizes <- as.integer(strsplit(args[3], ",")[[1]])
seconds <- numeric(length(sizes))
for (i in seq_along(sizes)) {
  invisible(cm_setup(args[1], args[2]))
  design <- jsonlite::fromJSON(cm_design(sizes[i], 1L), simplifyVector = FALSE)
  # a smooth function of the numeric coordinates, so that the surrogate has something to fit
  y <- vapply(design, function(p) {
    v <- unlist(Filter(is.numeric, p$x))
    sum((v - 0.3)^2) + 0.1 * sin(10 * sum(v))
  }, numeric(1))
  items <- lapply(seq_along(design), function(j) list(id = design[[j]]$id, y = y[j]))
  invisible(cm_tell(as.character(jsonlite::toJSON(items, auto_unbox = TRUE, digits = NA))))
  pending <- if (length(args) >= 4) as.integer(args[4]) else 0L
  if (pending > 0) invisible(cm_random(pending, 3L, ""))
  t0 <- proc.time()[["elapsed"]]
  invisible(cm_propose(1L, 2L))
  seconds[i] <- proc.time()[["elapsed"]] - t0
}
cat(as.character(jsonlite::toJSON(seconds, digits = NA)), "\n")
