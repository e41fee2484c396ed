# candle_mbo's R side: mlrMBO driven step by step (human-in-the-loop API) for a Python master.
#
# Sourced into its own environment by candle_mbo/mbo.py (through rpy2). Python owns the loop, the
# results log and resume; R owns the search space, the design, the surrogate and the proposals.
# Everything that crosses the boundary is a JSON string or a plain number.
#
# Point registry: every point handed to Python (design, proposal, random fallback) gets an integer
# id; its exact, untransformed row stays here, so that telling a result back loses no precision.
#
# Feeding results back (cm_tell): the points of a batch enter the optimization path in proposal
# order, with the extras (infill value, lambda, proposal type) of the proposal that produced them,
# then the loop counter advances -- the very steps of mbo()'s own evaluation (evalProposedPoints ->
# evalTargetFun -> finalizeMboLoop), so that seeded proposals equal mbo()'s (R/mbo_reference.R
# proves it). mlrMBO's exported updateSMBO() would do the same, but in mlrMBO 1.1.x it recomputes the
# infill criterion on the raw points and fails for spaces with integer or logical parameters ("column
# types have changed"), so it cannot serve CANDLE's spaces.
#
# Modes:
#   sync  - one batch of k proposals (mlrMBO multi-point, 'cb' by default), evaluated, told back.
#   async - results enter the path as they arrive (no surrogate fit per result); each proposal fits
#           the surrogate on finished points plus the pending ones with a lie for their y (by default
#           the surrogate's own prediction: "kriging believer"), so that concurrent proposals spread out.
#
# mlrMBO internals used (versions pinned in R/install_packages.R): getExtras, makeTaskSingleObj,
# proposePointsByInfillOptimization, getOptStateOptPath, getOptStateOptProblem, getOptStateLoop,
# getOptStateModels, finalizeMboLoop, deepCopyOptPath.

cm_required_packages <- c("ParamHelpers", "mlr", "smoof", "mlrMBO", "lhs", "randomForest", "DiceKriging",
                          "rgenoud", "jsonlite")

cm <- new.env()

# Name of the objective column in mlrMBO's design and path (not "y": spaces may have a parameter y).
cm_y_name <- "cm_objective"

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

cm_to_json <- function(x) {
  as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                                always_decimal = TRUE))
}

# ---------------------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------------------
cm_load_space <- function(path) {
  if (!file.exists(path)) stop(sprintf("space file not found: %s", path), call. = FALSE)
  env <- new.env(parent = globalenv())
  exprs <- tryCatch(parse(file = path, keep.source = TRUE), error = function(e) {
    stop(sprintf("%s: R syntax error: %s", path, conditionMessage(e)), call. = FALSE)
  })
  for (i in seq_along(exprs)) {
    line <- tryCatch(utils::getSrcLocation(exprs[i], "line")[1], error = function(e) NA)
    tryCatch(eval(exprs[[i]], envir = env), error = function(e) {
      where <- if (is.na(line)) path else sprintf("%s:%d", path, line)
      stop(sprintf("%s: %s", where, conditionMessage(e)), call. = FALSE)
    })
  }
  if (!exists("param.set", envir = env, inherits = FALSE)) {
    stop(sprintf("%s defines no `param.set`; define it with ParamHelpers, e.g. param.set <- makeParamSet(makeNumericParam(\"learning_rate\", lower = 1e-4, upper = 0.1))", path), call. = FALSE)
  }
  ps <- get("param.set", envir = env)
  if (!inherits(ps, "ParamSet")) {
    stop(sprintf("%s: `param.set` is a %s, not a ParamHelpers ParamSet made by makeParamSet()", path,
                 class(ps)[1]), call. = FALSE)
  }
  if (length(ps$pars) == 0) stop(sprintf("%s: `param.set` has no parameters", path), call. = FALSE)
  if (cm_y_name %in% getParamIds(ps)) stop(sprintf("%s: the name %s is reserved", path, cm_y_name), call. = FALSE)
  for (p in ps$pars) {
    if (p$type %in% c("discrete", "discretevector") && length(p$values) == 0) {
      stop(sprintf("%s: discrete parameter '%s' has no values", path, p$id), call. = FALSE)
    }
    if (p$type %in% c("numeric", "integer", "numericvector", "integervector")) {
      if (any(!is.finite(p$lower)) || any(!is.finite(p$upper))) {
        stop(sprintf("%s: parameter '%s' needs finite lower and upper bounds", path, p$id), call. = FALSE)
      }
      if (any(p$lower > p$upper)) {
        stop(sprintf("%s: parameter '%s' has lower %s > upper %s", path, p$id, format(p$lower), format(p$upper)),
             call. = FALSE)
      }
    }
    if (!p$type %in% c("numeric", "integer", "discrete", "logical", "numericvector", "integervector",
                       "discretevector", "logicalvector")) {
      stop(sprintf("%s: parameter '%s' has type %s, which candle_mbo cannot search (use numeric, integer, discrete, logical or their vector forms)",
                   path, p$id, p$type), call. = FALSE)
    }
  }
  ps
}

cm_describe_space <- function(ps) {
  pars <- lapply(ps$pars, function(p) {
    list(id = p$id, type = p$type, len = p$len, trafo = !is.null(p$trafo), requires = !is.null(p$requires),
         values = if (!is.null(p$values)) I(names(p$values)) else NULL,
         lower = if (!is.null(p$lower)) I(p$lower) else NULL, upper = if (!is.null(p$upper)) I(p$upper) else NULL)
  })
  levels <- vapply(ps$pars, function(p) if (p$type %in% c("discrete", "discretevector")) length(p$values)
                   else if (p$type %in% c("logical", "logicalvector")) 2L else 0L, integer(1))
  list(params = pars, ids = I(getParamIds(ps)), columns = I(getParamIds(ps, repeated = TRUE, with.nr = TRUE)),
       dims = sum(getParamLengths(ps)), max_levels = max(c(0L, levels)), numeric_only = isNumeric(ps, include.int = TRUE),
       has_requires = hasRequires(ps), has_forbidden = hasForbidden(ps))
}

# ---------------------------------------------------------------------------------------------------
# Control and learner
# ---------------------------------------------------------------------------------------------------
cm_make_crit <- function(name) {
  switch(name,
    default = NULL,
    cb = makeMBOInfillCritCB(),
    ei = makeMBOInfillCritEI(),
    aei = makeMBOInfillCritAEI(),
    eqi = makeMBOInfillCritEQI(),
    adacb = makeMBOInfillCritAdaCB(),
    mr = makeMBOInfillCritMeanResponse(),
    se = makeMBOInfillCritStandardError(),
    stop(sprintf("unknown infill criterion '%s'", name), call. = FALSE))
}

# The control: mlrMBO's defaults unless the settings say otherwise. `settings` is a list with
# propose_points, crit, profile ('mlrmbo' or 'fast'), iters (termination, used by mbo() only).
cm_make_control <- function(settings) {
  k <- as.integer(settings$propose_points)
  control <- makeMBOControl(propose.points = k, y.name = cm_y_name, store.model.at = integer(0),
                            on.surrogate.error = "stop")
  crit <- cm_make_crit(settings$crit)
  infill.args <- list(control = control, crit = crit)
  if (identical(settings$profile, "fast")) {
    infill.args <- c(infill.args, list(opt.focussearch.points = 300L, opt.focussearch.maxit = 3L,
                                       opt.restarts = 1L))
  }
  control <- do.call(setMBOControlInfill, infill.args)
  if (k > 1L) {
    method <- if (settings$crit %in% c("default", "cb")) "cb" else "cl"
    control <- setMBOControlMultiPoint(control, method = method)
  }
  control <- setMBOControlTermination(control, iters = as.integer(if (is.null(settings$iters)) 1e6 else settings$iters))
  control
}

# NULL means mlrMBO's default learner (kriging for numeric spaces without requires, else a random
# forest with jackknife standard errors), built by initSMBO()/mbo() exactly as mbo() builds it.
cm_make_learner <- function(settings, ps, control) {
  name <- settings$learner
  fast <- identical(settings$profile, "fast")
  if (identical(name, "default") && !fast) return(NULL)
  if (identical(name, "default")) name <- if (isNumeric(ps, include.int = TRUE) && !hasRequires(ps)) "km" else "rf"
  lrn <- switch(name,
    rf = makeLearner("regr.randomForest", se.method = "jackknife", keep.inbag = TRUE,
                     ntree = if (fast) 100L else 500L),
    ranger = makeLearner("regr.ranger", se.method = "jack", keep.inbag = TRUE,
                         num.trees = if (fast) 100L else 500L, num.threads = 1L),
    km = {
      if (!isNumeric(ps, include.int = TRUE)) {
        stop("--learner km needs a space of numeric and integer parameters only (this one has discrete or logical ones); use rf or ranger", call. = FALSE)
      }
      if (hasRequires(ps)) stop("--learner km cannot handle parameters with requires=; use rf or ranger", call. = FALSE)
      makeLearner("regr.km", covtype = "matern3_2", optim.method = if (fast) "BFGS" else "gen",
                  nugget.stability = 1e-8)
    },
    stop(sprintf("unknown learner '%s'", name), call. = FALSE))
  if (name %in% c("rf", "ranger") && hasRequires(ps)) {
    lrn <- makeImputeWrapper(lrn, classes = list(numeric = imputeMax(2), factor = imputeConstant("__miss__")))
  }
  lrn <- setPredictType(lrn, "se")
  lrn$config <- list(show.learner.output = FALSE, on.learner.error = "stop")
  lrn
}

# Entry point: load and check everything; returns the space description as JSON.
cm_setup <- function(space_path, settings_json) {
  cm_check_packages()
  settings <- jsonlite::fromJSON(settings_json, simplifyVector = TRUE)
  ps <- cm_load_space(space_path)
  cm$settings <- settings
  cm$par.set <- ps
  cm$minimize <- !isTRUE(settings$maximize)
  if (identical(settings$mode, "async")) settings$propose_points <- 1L  # one point per proposal
  cm$control <- cm_make_control(settings)
  cm$learner <- cm_make_learner(settings, ps, cm$control)
  cm$columns <- getParamIds(ps, repeated = TRUE, with.nr = TRUE)
  cm$template <- cm_template(ps)
  cm$registry <- list()
  cm$extras <- list()
  cm$next_id <- 0L
  cm$told <- integer(0)
  cm$told_x <- NULL
  cm$told_y <- numeric(0)
  cm$state <- NULL
  cm$log <- character(0)
  cm_to_json(cm_describe_space(ps))
}

# A zero-row data frame with the column types mlrMBO expects for this space.
cm_template <- function(ps) {
  d <- generateDesign(2L, ps)
  d[0, , drop = FALSE]
}

# ---------------------------------------------------------------------------------------------------
# Points: registry and conversion to what run() receives
# ---------------------------------------------------------------------------------------------------
# Registers proposed rows; `path_extras` are the optimization-path extras each row will be logged
# with when its result comes back (NULL: those of a design point).
cm_register <- function(df, prop_type, extra = NULL, path_extras = NULL) {
  out <- vector("list", nrow(df))
  for (i in seq_len(nrow(df))) {
    cm$next_id <- cm$next_id + 1L
    id <- cm$next_id
    row <- df[i, cm$columns, drop = FALSE]
    rownames(row) <- NULL
    cm$registry[[as.character(id)]] <- row
    if (!is.null(path_extras)) cm$extras[[as.character(id)]] <- path_extras[[i]]
    item <- list(id = id, x = cm_raw_x(row), params = cm_run_params(row), prop_type = prop_type[i])
    if (!is.null(extra)) item <- c(item, extra[[i]])
    out[[i]] <- item
  }
  out
}

# The untransformed row as a flat list (levels as names, NA as null): stored with each result.
cm_raw_x <- function(row) {
  x <- lapply(cm$columns, function(col) {
    v <- row[[col]]
    if (is.factor(v)) v <- as.character(v)
    if (length(v) == 1 && is.na(v)) NULL else v
  })
  names(x) <- cm$columns
  x
}

# What run() receives: trafo applied, discrete values as values, inactive parameters left out.
cm_run_params <- function(row) {
  ps <- cm$par.set
  x <- dfRowToList(row, ps, 1L)
  x <- trafoValue(ps, x)
  x <- removeMissingValues(x)
  for (id in names(x)) {
    p <- ps$pars[[id]]
    v <- x[[id]]
    if (is.factor(v)) v <- as.character(v)
    if (p$type %in% c("integer", "integervector") && is.numeric(v) && all(is.finite(v)) && all(v == round(v)) &&
        all(abs(v) < .Machine$integer.max)) {
      v <- as.integer(v)
    } else if (p$type %in% c("discrete", "discretevector") && is.numeric(v) && all(is.finite(v)) &&
               all(v == round(v)) && all(abs(v) < .Machine$integer.max)) {
      v <- as.integer(v)
    }
    if (grepl("vector$", p$type) || length(v) > 1) v <- I(v)
    x[[id]] <- v
  }
  x
}

# Rebuild an untransformed row from its flat list (resume: results.jsonl stores it).
cm_row_from_x <- function(x) {
  row <- cm$template[NA_integer_, , drop = FALSE]
  rownames(row) <- NULL
  for (col in cm$columns) {
    v <- x[[col]]
    if (is.null(v) || (length(v) == 1 && is.na(v))) next
    if (is.factor(row[[col]])) {
      if (!v %in% levels(row[[col]])) stop(sprintf("recorded value %s of %s is not a level of the space", v, col), call. = FALSE)
      row[[col]] <- factor(v, levels = levels(row[[col]]))
    } else if (is.integer(row[[col]])) {
      row[[col]] <- as.integer(v)
    } else if (is.logical(row[[col]])) {
      row[[col]] <- as.logical(v)
    } else {
      row[[col]] <- as.numeric(v)
    }
  }
  row
}

# ---------------------------------------------------------------------------------------------------
# Designs
# ---------------------------------------------------------------------------------------------------
# Latin hypercube design (ParamHelpers' generateDesign, as mlrMBO's own default), then patched so that
# every level of every discrete and logical parameter appears at least once: a level never seen in
# training breaks the random-forest surrogate later (mlrMBO issue 454).
cm_design <- function(n, seed) {
  set.seed(seed)
  ps <- cm$par.set
  d <- generateDesign(as.integer(n), ps)
  d <- cm_patch_levels(d, ps)
  cm_to_json(cm_register(d, rep("initdesign", nrow(d))))
}

cm_patch_levels <- function(d, ps) {
  for (p in ps$pars) {
    if (!p$type %in% c("discrete", "logical")) next
    col <- p$id
    wanted <- if (p$type == "logical") c(TRUE, FALSE) else names(p$values)
    for (level in wanted) {
      present <- as.character(d[[col]])
      if (level %in% present) next
      counts <- table(present[!is.na(present)])
      # rows where the parameter is active and its level is over-represented: changing one of them
      # loses no level
      candidates <- which(!is.na(d[[col]]) & present %in% names(counts)[counts > 1])
      patched <- FALSE
      for (i in sample(candidates)) {
        trial <- d
        if (is.factor(trial[[col]])) trial[[col]][i] <- factor(level, levels = levels(trial[[col]]))
        else trial[[col]][i] <- as.logical(level)
        x <- dfRowToList(trial, ps, i)
        if (isFeasible(ps, x) && (!hasForbidden(ps) || !isForbidden(ps, x))) {
          d <- trial
          patched <- TRUE
          break
        }
      }
      if (!patched) {
        cm$log <- c(cm$log, sprintf("design: could not place level %s of %s without breaking requires/forbidden", level, col))
      }
    }
  }
  d
}

cm_random_df <- function(n) {
  generateRandomDesign(as.integer(n), cm$par.set)
}

cm_random <- function(n, seed, reason = "") {
  set.seed(seed)
  d <- cm_random_df(n)
  type <- if (nzchar(reason)) "random_fallback" else "random"
  extra <- rep(list(list(error = if (nzchar(reason)) reason else NULL)), nrow(d))
  cm_to_json(cm_register(d, rep(type, nrow(d)), extra, cm_design_extras(nrow(d), type)))
}

# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------
# Failed runs (y NA) get the worst finite value seen so far plus 10% of the observed range (or of
# max(|worst|, 1) when all values are equal): bad enough that the surrogate avoids the region, finite
# so that it can be fitted. Returns NULL when no finite value exists yet.
cm_impute <- function(y, seen) {
  finite <- seen[is.finite(seen)]
  if (!length(finite)) return(NULL)
  worst <- if (cm$minimize) max(finite) else min(finite)
  spread <- max(finite) - min(finite)
  if (spread == 0) spread <- max(abs(worst), 1)
  y[!is.finite(y)] <- worst + (if (cm$minimize) 1 else -1) * 0.1 * spread
  y
}

# items_json: [{"id": 3, "y": 0.25}, {"id": 4, "y": null}, {"x": {...}, "y": 1.5}, ...] in the order
# they must enter the optimization path (a sync batch: proposal order). Returns the y values the
# surrogate receives (failed runs imputed; null while no run has succeeded yet).
cm_tell <- function(items_json) {
  items <- jsonlite::fromJSON(items_json, simplifyVector = FALSE)
  if (!length(items)) return(cm_to_json(list()))
  rows <- lapply(items, function(it) {
    if (!is.null(it$id)) {
      row <- cm$registry[[as.character(it$id)]]
      if (is.null(row)) stop(sprintf("unknown point id %s", it$id), call. = FALSE)
      row
    } else cm_row_from_x(it$x)
  })
  new_x <- do.call(rbind, rows)
  new_y <- vapply(items, function(it) if (is.null(it$y)) NA_real_ else as.numeric(it$y), numeric(1))
  ids <- vapply(items, function(it) if (is.null(it$id)) NA_integer_ else as.integer(it$id), integer(1))
  old_n <- length(cm$told_y)
  cm$told_x <- if (is.null(cm$told_x)) new_x else rbind(cm$told_x, new_x)
  cm$told_y <- c(cm$told_y, new_y)
  cm$told <- c(cm$told, ids[!is.na(ids)])
  imputed_all <- cm_impute(cm$told_y, cm$told_y)
  if (is.null(imputed_all)) {
    # nothing finite yet: keep the points; the surrogate starts once a run succeeds
    return(cm_to_json(rep(list(NULL), length(new_y))))
  }
  y_new <- imputed_all[(old_n + 1):length(imputed_all)]
  if (is.null(cm$state)) {
    cm_rebuild_state(imputed_all)
  } else {
    extras <- lapply(ids, function(id) if (is.na(id)) NULL else cm$extras[[as.character(id)]])
    cm_append_path(new_x, y_new, extras = extras)
    mlrMBO:::finalizeMboLoop(cm$state)
  }
  for (id in ids[!is.na(ids)]) cm$extras[[as.character(id)]] <- NULL
  stopifnot(all(is.finite(cm_path_y())))
  cm_to_json(as.list(y_new))
}

# A fresh optimization state with every told point as its design (start, resume, or after the first
# successful run).
cm_rebuild_state <- function(y) {
  design <- cm$told_x
  design[[cm_y_name]] <- y
  cm$state <- initSMBO(par.set = cm$par.set, design = design, learner = cm$learner, control = cm$control,
                       minimize = cm$minimize, noisy = FALSE, show.info = FALSE)
}

cm_design_extras <- function(n, prop_type = "initdesign") {
  extras <- mlrMBO:::getExtras(n = n, prop = NULL, train.time = NA_real_, control = cm$control)
  lapply(extras, function(e) { e$prop.type <- prop_type; e })
}

# Adds evaluated rows to an optimization path the way mbo()'s evalTargetFun does.
cm_append_path <- function(x, y, extras = NULL, opt.path = mlrMBO:::getOptStateOptPath(cm$state)) {
  ps <- cm$par.set
  xs <- lapply(dfRowsToList(x, ps), ParamHelpers::repairPoint, par.set = ps)
  defaults <- cm_design_extras(length(xs))
  dob <- mlrMBO:::getOptStateLoop(cm$state)
  for (i in seq_along(xs)) {
    extra <- if (!is.null(extras) && length(extras) >= i && !is.null(extras[[i]])) extras[[i]] else defaults[[i]]
    addOptPathEl(opt.path, x = xs[[i]], y = y[i], dob = dob, error.message = NA_character_,
                 exec.time = NA_real_, extra = extra)
  }
  invisible(opt.path)
}

# ---------------------------------------------------------------------------------------------------
# Proposals
# ---------------------------------------------------------------------------------------------------
cm_proposal_items <- function(prop, k) {
  crit <- if (!is.null(prop$crit.vals)) as.numeric(prop$crit.vals[, 1]) else rep(NA_real_, k)
  lambdas <- prop$multipoint.cb.lambdas
  errors <- prop$errors.model
  if (is.null(errors)) errors <- rep(NA_character_, k)
  if (length(errors) == 1L) errors <- rep(errors, k)
  lapply(seq_len(k), function(i) {
    list(crit = if (is.finite(crit[i])) crit[i] else NULL,
         lambda = if (!is.null(lambdas) && length(lambdas) >= i) lambdas[i] else NULL,
         error = if (is.na(errors[i])) NULL else errors[i])
  })
}

# The reliability tests' hook: CANDLE_MBO_INJECT_FAULT=surrogate makes every surrogate fit fail, as
# kriging does now and then on flat data (a real failure cannot be made to happen on cue in async mode).
cm_injected_fault <- function() {
  if (identical(Sys.getenv("CANDLE_MBO_INJECT_FAULT"), "surrogate")) {
    stop("injected surrogate fault (CANDLE_MBO_INJECT_FAULT)", call. = FALSE)
  }
}

# k points. Sync: mlrMBO's proposePoints on the state (a batch of k, multi-point 'cb' by default).
# Async: one point at a time, with pending points entered under a lie. Any surrogate error gives
# random points instead (prop_type 'random_fallback', the error in 'error').
cm_propose <- function(k, seed) {
  k <- as.integer(k)
  if (is.null(cm$state)) {
    return(cm_random(k, seed, "no successful run yet: the surrogate cannot be fitted"))
  }
  if (identical(cm$settings$mode, "async")) {
    return(cm_propose_async(k, seed))
  }
  problem <- mlrMBO:::getOptStateOptProblem(cm$state)
  problem$control$propose.points <- k
  set.seed(seed)
  prop <- tryCatch({
    cm_injected_fault()
    proposePoints(cm$state)
  }, error = function(e) e)
  problem$control$propose.points <- cm$control$propose.points
  if (inherits(prop, "error")) {
    msg <- conditionMessage(prop)
    cm$log <- c(cm$log, sprintf("surrogate failed (%s); random points instead", msg))
    return(cm_random(k, seed, msg))
  }
  n <- nrow(prop$prop.points)
  train.time <- mlrMBO:::getOptStateModels(cm$state)$train.time
  path_extras <- mlrMBO:::getExtras(n = n, prop = prop, train.time = train.time, control = problem$control)
  cm_to_json(cm_register(prop$prop.points, prop$prop.type, cm_proposal_items(prop, n), path_extras))
}

cm_path_y <- function() {
  mlrMBO:::getOptStateOptPath(cm$state)$env$path[[cm_y_name]]
}

# The constant lie for pending points (constant liar): settings$lie is the 'best', 'mean' or 'worst'
# finished value in the direction of the search ('none' ignores pending points; 'believer' see cm_lies).
cm_lie <- function() {
  y <- cm_path_y()
  best <- if (cm$minimize) min(y) else max(y)
  worst <- if (cm$minimize) max(y) else min(y)
  switch(cm$settings$lie, best = best, worst = worst, mean = mean(y), believer = mean(y), stop("unknown lie"))
}

# One lie per pending row: the constant of cm_lie(), or for 'believer' (kriging believer) the
# surrogate's own prediction there, which shrinks its uncertainty around running points without
# inventing an optimum or a wall.
cm_lies <- function(rows, opt.path, control, learner) {
  if (!identical(cm$settings$lie, "believer")) return(rep(cm_lie(), nrow(rows)))
  model <- train(learner, mlrMBO:::makeTaskSingleObj(opt.path, control))
  newdata <- BBmisc::convertDataFrameCols(rows, ints.as.num = TRUE, logicals.as.factor = TRUE)
  getPredictionResponse(predict(model, newdata = newdata))
}

cm_pending_ids <- function() {
  ids <- as.integer(names(cm$registry))
  setdiff(ids, cm$told)
}

cm_propose_async <- function(k, seed) {
  out <- list()
  problem <- mlrMBO:::getOptStateOptProblem(cm$state)
  control1 <- problem$control  # initialized by initSMBO (e.g. the CB lambda chosen for this space)
  control1$propose.points <- 1L
  control1$multipoint.method <- NULL
  learner <- problem$learner
  set.seed(seed)
  for (j in seq_len(k)) {
    pending <- cm_pending_ids()
    op <- mlrMBO:::deepCopyOptPath(mlrMBO:::getOptStateOptPath(cm$state))
    if (length(pending) && !identical(cm$settings$lie, "none")) {
      # as mlrMBO's own constant liar does: x and the lie only (a copied path keeps no extras)
      rows <- do.call(rbind, cm$registry[as.character(pending)])
      xs <- lapply(dfRowsToList(rows, cm$par.set), ParamHelpers::repairPoint, par.set = cm$par.set)
      lies <- tryCatch(cm_lies(rows, op, control1, learner), error = function(e) rep(cm_lie(), length(xs)))
      dob <- mlrMBO:::getOptStateLoop(cm$state)
      for (i in seq_along(xs)) addOptPathEl(op, x = xs[[i]], y = lies[i], dob = dob)
    }
    crit <- control1$infill.crit
    if (isTRUE(cm$settings$random_lambda) && identical(getMBOInfillCritId(crit), "cb")) {
      control1$infill.crit <- makeMBOInfillCritCB(cb.lambda = rexp(1))
    }
    prop <- tryCatch({
      cm_injected_fault()
      task <- mlrMBO:::makeTaskSingleObj(op, control1)
      model <- train(learner, task)
      mlrMBO:::proposePointsByInfillOptimization(cm$state, control = control1, opt.path = op,
                                                 models = list(model), designs = list(getTaskData(task)))
    }, error = function(e) e)
    control1$infill.crit <- crit
    if (inherits(prop, "error")) {
      msg <- conditionMessage(prop)
      cm$log <- c(cm$log, sprintf("surrogate failed (%s); random point instead", msg))
      d <- cm_random_df(1L)
      item <- cm_register(d, "random_fallback", list(list(error = msg)), cm_design_extras(1L, "random_fallback"))
    } else {
      path_extras <- mlrMBO:::getExtras(n = 1L, prop = prop, train.time = NA_real_, control = control1)
      item <- cm_register(prop$prop.points, prop$prop.type, cm_proposal_items(prop, 1L), path_extras)
    }
    out <- c(out, item)
  }
  cm_to_json(out)
}

# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------
cm_versions <- function() {
  pkgs <- c("mlrMBO", "smoof", "mlr", "ParamHelpers", "DiceKriging", "randomForest")
  paste(sprintf("%s %s", pkgs, vapply(pkgs, function(p) as.character(packageVersion(p)), "")), collapse = ", ")
}

cm_take_log <- function() {
  messages <- cm$log
  cm$log <- character(0)
  cm_to_json(I(messages))
}

# Saves the mlrMBO optimization path (as an OptPath object and as a data frame) to an .rds file.
cm_save_path <- function(file) {
  if (is.null(cm$state)) return(FALSE)
  op <- mlrMBO:::getOptStateOptPath(cm$state)
  saveRDS(list(opt.path = op, data = as.data.frame(op), par.set = cm$par.set, control = cm$control), file)
  TRUE
}

# The design rows (untransformed), for R/mbo_reference.R.
cm_save_design <- function(ids_json, file) {
  ids <- jsonlite::fromJSON(ids_json)
  design <- do.call(rbind, cm$registry[as.character(ids)])
  rownames(design) <- NULL
  saveRDS(design, file)
  TRUE
}
