# Reference check: does a seeded synchronous candle_mbo experiment propose exactly what plain
# mlrMBO::mbo() proposes with the same seed, design, control and learner?
#
#   Rscript R/mbo_reference.R EXPERIMENT_DIR
#
# It reads the experiment's mbo_settings.json, the exact design rows (saved in mlrmbo_opt_path.rds) and
# the run records of results.jsonl, then runs mbo() on the same problem: the space as
# candle_mbo searches it (constants out, discrete vectors split, see cm_searched_space). mbo()'s
# objective function looks the point up among the experiment's results (so no objective is computed
# twice) and, after the last point of each batch, seeds R the way candle_mbo does before each
# proposal batch i: set.seed(proposal_seed(seed, i)).
# It prints one JSON object: {"equal": true/false, "batches": n, "points": n, "first_mismatch": ...}
# and exits 0 when every proposed point equals the experiment's (relative tolerance 1e-9, the
# precision of the JSON record), 1 otherwise.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) {
  cat("usage: Rscript R/mbo_reference.R EXPERIMENT_DIR\n")
  quit(status = 2)
}
exp_dir <- args[1]
script_dir <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])))
source(file.path(script_dir, "candle_mbo.R"))
cm_check_packages()

settings_file <- file.path(exp_dir, "mbo_settings.json")
settings <- jsonlite::fromJSON(settings_file, simplifyVector = TRUE)
design <- readRDS(file.path(exp_dir, "mlrmbo_opt_path.rds"))$design
design[[cm_y_name]] <- NULL
lines <- readLines(file.path(exp_dir, "results.jsonl"), warn = FALSE)
records <- lapply(lines[nzchar(lines)], jsonlite::fromJSON, simplifyVector = FALSE)
records <- Filter(function(r) !is.null(r$status) && is.null(r$event), records)  # run records, not journal events
run_number <- function(r) as.integer(sub("^run-", "", r$run_id))
records <- records[order(vapply(records, run_number, integer(1)))]
step_of <- function(r) if (!is.null(r$step)) r$step else r$iteration
proposals <- Filter(function(r) step_of(r) > 0, records)

invisible(cm_setup(settings$space, paste(readLines(settings_file, warn = FALSE), collapse = "\n")))
ps <- cm$par.set
k <- as.integer(settings$propose_points)
n_batches <- ceiling(length(proposals) / k)
settings$iters <- n_batches
control <- cm_make_control(settings)
learner <- cm_make_learner(settings, ps, control)

same_value <- function(a, b) {
  if (is.null(b)) return(length(a) == 1 && is.na(a))
  if (is.factor(a)) a <- as.character(a)
  b <- unlist(b)
  if (length(a) != length(b)) return(FALSE)
  if (is.numeric(a) && is.numeric(b)) return(all(abs(a - b) <= 1e-9 * pmax(1, abs(a))))
  if (is.logical(a) && is.logical(b)) return(all(a == b))
  all(as.character(a) == as.character(b))
}

# x: a point of the searched space (trafo applied); split vectors joined before comparing
same_point <- function(x, params) {
  for (id in names(cm$split)) {
    parts <- x[cm$split[[id]]]
    x[cm$split[[id]]] <- NULL
    x[[id]] <- unlist(parts)
  }
  for (id in names(x)) {
    if (!same_value(x[[id]], params[[id]])) return(FALSE)
  }
  TRUE
}

# candle_mbo.hpo.proposal_seed: the seed of step i (0: design, i: batch i) of a search seeded with S
proposal_seed <- function(S, i) (as.numeric(S) * 10007 + i) %% 2147483647

calls <- 0L
n_design <- nrow(design)
fun_impl <- function(x) {
  calls <<- calls + 1L
  value <- NA_real_
  for (r in records) {
    if (same_point(x, r$params)) {
      value <- if (identical(r$status, "ok")) as.numeric(r$objective) else NA_real_
      break
    }
  }
  if (is.na(value)) {
    stop(sprintf("mbo() proposed a point the experiment did not evaluate (evaluation %d): %s", calls,
                 paste(names(x), vapply(x, function(v) paste(format(v, digits = 15), collapse = " "), ""),
                       sep = "=", collapse = ", ")))
  }
  done <- calls - n_design
  if (calls == n_design || (done > 0 && done %% k == 0)) {
    set.seed(proposal_seed(settings$seed, max(0L, done %/% k) + 1L))
  }
  value
}
fun <- makeSingleObjectiveFunction(name = "candle_mbo reference", fn = fun_impl, par.set = ps,
                                   has.simple.signature = FALSE, minimize = !isTRUE(settings$maximize))

result <- tryCatch(mbo(fun, design = design, learner = learner, control = control, show.info = FALSE),
                   error = function(e) e)
if (inherits(result, "error")) {
  cat(jsonlite::toJSON(list(equal = FALSE, first_mismatch = conditionMessage(result)), auto_unbox = TRUE), "\n")
  quit(status = 1)
}
path <- as.data.frame(result$opt.path)
mbo_rows <- path[path$dob > 0, , drop = FALSE]
mismatch <- NULL
if (nrow(mbo_rows) != length(proposals)) {
  mismatch <- sprintf("mbo() evaluated %d proposals, the experiment %d", nrow(mbo_rows), length(proposals))
} else {
  for (i in seq_len(nrow(mbo_rows))) {
    x <- trafoValue(ps, dfRowToList(mbo_rows, ps, i))
    if (!same_point(x, proposals[[i]]$params) &&
        !same_point(removeMissingValues(x), proposals[[i]]$params)) {
      mismatch <- sprintf("proposal %d (%s) differs", i, proposals[[i]]$run_id)
      break
    }
  }
}
cat(jsonlite::toJSON(list(equal = is.null(mismatch), batches = n_batches, points = nrow(mbo_rows),
                          first_mismatch = mismatch), auto_unbox = TRUE, null = "null"), "\n")
quit(status = if (is.null(mismatch)) 0 else 1)
