# candle_mbo's R side: mlrMBO driven step by step (human-in-the-loop API) for a Python master.
#
# This file is the loader: the shared state and helpers below, then the parts by concern (cm_space.R,
# cm_control.R, cm_points.R, cm_design.R, cm_feedback.R, cm_propose.R, cm_output.R) in that order.
#
# Sourced into an environment of its own by candle_mbo/search/mbo.py (through rpy2), once per optimizer: two
# optimizers in one process share no state (each environment has its own `cm`). Python owns the loop,
# the task journal and resume; R owns the search space, the design, the surrogate and the proposals.
# Everything that crosses the boundary is a JSON string or a plain number.
#
# The space. Constant parameters (numeric or integer with lower == upper, discrete with one level)
# are taken out of what mlrMBO sees (kriging cannot fit a zero-width domain) and put back into what
# run() receives. Points (`x`) are rows of the searched space; `params` are run()'s values.
#
# Point registry: every point handed to Python (design, proposal, random fallback, adopted) gets an
# integer id; its exact, untransformed row stays here, so that telling a result back loses no
# precision. A point handed out and neither told nor discarded is *pending* (running).
#
# The optimization path. Told results enter mlrMBO's path the way mbo() enters them
# (evalProposedPoints -> evalTargetFun -> finalizeMboLoop): in sync mode a whole batch (a design, a
# proposal step) enters at once in proposal order, whatever order its results arrive in, and then the
# loop counter advances; in async mode each tell enters at once. So seeded sync proposals equal
# mbo()'s (R/mbo_reference.R proves it). mlrMBO's exported updateSMBO() would do the same, but in
# mlrMBO 1.1.x it recomputes the infill criterion on the raw points and fails for spaces with integer
# or logical parameters ("column types have changed"), so it cannot serve CANDLE's spaces.
#
# What the surrogate is told. Failed runs stay missing in our record (cm$raw_y) and are imputed over
# the *current* range each time the path changes (so before every fit): worst finite value + 10% of
# the finite range, with arithmetic that cannot overflow. A value whose magnitude exceeds 1e100 (a
# diverged run) is treated as a failure for the surrogate: sums of squares of such values overflow.
# Values beyond the divergence fence (cm_fence: median + 100 robust spreads of the ok values, on the
# worse side) enter capped at the fence, and --objective-transform log gives the surrogate log10(y).
#
# Modes:
#   sync  - batches: mlrMBO's proposePoints (multi-point 'cb' with random lambdas by default; 'cl' for
#           ei/aei; adacb: CB points with lambdas drawn around the adaptive value).
#   async - one surrogate fit per propose(k): finished points plus the pending ones with a lie for
#           their y (by default the surrogate's own prediction: "kriging believer"); then k distinct
#           points from that fit (see cm_propose_async).
#
# mlrMBO internals used (versions pinned in R/install_packages.R): getExtras, makeTaskSingleObj,
# proposePointsByInfillOptimization, joinProposedPoints, getOptStateOptPath, getOptStateOptProblem,
# getOptStateLoop, getOptStateModels, getOptStateTermination, setOptStateProgress, finalizeMboLoop,
# deepCopyOptPath.

cm_required_packages <- c("ParamHelpers", "mlr", "smoof", "mlrMBO", "lhs", "randomForest", "DiceKriging",
                          "rgenoud", "jsonlite")

cm <- new.env()

# Name of the objective column in mlrMBO's design and path (not "y": spaces may have a parameter y).
cm_y_name <- "cm_objective"

# Magnitude above which a finished value counts as diverged for the surrogate (see the header).
cm_diverged <- 1e100

cm_check_packages <- function() {
  missing <- cm_required_packages[!vapply(cm_required_packages, requireNamespace, logical(1), quietly = TRUE)]
  if (length(missing)) {
    stop(sprintf("R package%s %s not installed (R library paths: %s); install with `make setup` or `Rscript R/install_packages.R`",
                 if (length(missing) > 1) "s" else "", paste(missing, collapse = ", "),
                 paste(.libPaths(), collapse = ", ")), call. = FALSE)
  }
  suppressPackageStartupMessages({
    library(ParamHelpers)
    library(mlr)
    library(mlrMBO)
  })
  configureMlr(show.info = FALSE, show.learner.output = FALSE)
  invisible(TRUE)
}

# JSON for Python. Doubles travel with 17 significant digits (jsonlite prints at most 15), so a point
# read back from the journal is the very row that was proposed: a resumed search fits the same data.
cm_to_json <- function(x) {
  as.character(jsonlite::toJSON(cm_exact_doubles(x), auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                                always_decimal = TRUE, json_verbatim = TRUE))
}

cm_exact_doubles <- function(x) {
  if (is.list(x)) {
    out <- lapply(x, cm_exact_doubles)
    names(out) <- names(x)
    return(out)
  }
  if (!is.double(x) || is.factor(x) || !length(x) || anyNA(x) || !all(is.finite(x))) return(x)
  s <- sprintf("%.17g", x)
  s <- ifelse(grepl("[.e]", s), s, paste0(s, ".0"))
  if (length(x) == 1L && !inherits(x, "AsIs")) return(structure(s, class = "json"))
  structure(paste0("[", paste(s, collapse = ","), "]"), class = "json")
}

# ---------------------------------------------------------------------------------------------------
# The parts, by concern, sourced in this order into the environment this file is evaluated in (an
# environment of its own per optimizer when candle_mbo/search/mbo.py loads it; the global one under
# Rscript). The folder is `cm_r_dir` when the caller set it, else the folder of the file being sourced.
# ---------------------------------------------------------------------------------------------------
cm_parts <- c("cm_space.R", "cm_control.R", "cm_points.R", "cm_design.R", "cm_feedback.R", "cm_propose.R",
              "cm_output.R")

cm_source_dir <- function() {
  if (exists("cm_r_dir", inherits = TRUE)) return(get("cm_r_dir", inherits = TRUE))
  for (frame in rev(sys.frames())) {  # source() keeps the path in `ofile`, sys.source() in `file`
    for (name in c("ofile", "file")) {
      path <- if (exists(name, envir = frame, inherits = FALSE)) get(name, envir = frame) else NULL
      if (is.character(path) && length(path) == 1L && file.exists(path)) return(dirname(normalizePath(path)))
    }
  }
  stop("candle_mbo.R: cannot tell which folder it was loaded from; set cm_r_dir first", call. = FALSE)
}

cm_load_parts <- function(target) {
  folder <- cm_source_dir()
  for (part in cm_parts) sys.source(file.path(folder, part), envir = target)
}
cm_load_parts(environment())
