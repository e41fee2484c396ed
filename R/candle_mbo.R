# candle_mbo's R side: mlrMBO driven step by step (human-in-the-loop API) for a Python master.
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

cm_is_constant <- function(p) {
  if (p$type %in% c("numeric", "integer", "numericvector", "integervector")) return(all(p$lower == p$upper))
  if (p$type %in% c("discrete", "discretevector")) return(length(p$values) == 1L)
  FALSE
}

# The untransformed value of a constant parameter, as dfRowToList would give it.
cm_constant_value <- function(p) {
  switch(p$type,
    numeric = , numericvector = as.numeric(p$lower),
    integer = , integervector = as.integer(p$lower),
    discrete = p$values[[1]],
    discretevector = rep(list(p$values[[1]]), p$len))
}

# The space mlrMBO searches: `ps` without its constant parameters, whose values are substituted into
# the requires= and forbidden= expressions that mention them, and with every discrete or logical vector
# parameter split into one scalar parameter per element (named like its columns: activations1, ...):
# mlrMBO's focus search fails on discrete vectors ("invalid first argument" when no element differs
# from the level it drops). Returns list(par.set, constants, split: id -> element ids).
cm_searched_space <- function(ps, path = "space") {
  constant <- vapply(ps$pars, cm_is_constant, logical(1))
  constants <- lapply(ps$pars[constant], cm_constant_value)
  if (all(constant)) {
    stop(sprintf("%s: every parameter is constant (lower == upper or a single level): nothing to search", path),
         call. = FALSE)
  }
  # a scalar constant enters an expression as itself; a discrete level that is not a plain scalar
  # (a vector level) as its name, the way ParamHelpers compares discrete values
  subst <- lapply(names(constants), function(id) {
    v <- constants[[id]]
    if (is.atomic(v) && length(v) == 1L) v else names(ps$pars[[id]]$values)[1]
  })
  names(subst) <- names(constants)
  pars <- list()
  split <- list()
  for (p in ps$pars[!constant]) {
    if (p$type %in% c("discretevector", "logicalvector")) {
      ids <- getParamIds(makeParamSet(p), repeated = TRUE, with.nr = TRUE)
      split[[p$id]] <- ids
      subst[[p$id]] <- as.call(c(list(as.name("c")), lapply(ids, as.name)))
      for (e in ids) {
        pars[[e]] <- if (p$type == "logicalvector") makeLogicalParam(e, requires = p$requires)
                     else makeDiscreteParam(e, values = p$values, requires = p$requires)
      }
    } else {
      pars[[p$id]] <- p
    }
  }
  searched <- ps
  searched$pars <- pars
  if (length(subst)) {
    for (id in names(searched$pars)) {
      req <- searched$pars[[id]]$requires
      if (!is.null(req)) searched$pars[[id]]$requires <- do.call(substitute, list(req, subst))
    }
    if (!is.null(searched$forbidden)) searched$forbidden <- do.call(substitute, list(searched$forbidden, subst))
  }
  list(par.set = searched, constants = constants, split = split)
}

# A point of the searched space (dfRowToList) as values of the space file's parameters: split vectors
# joined, constants added (NA where their requires= fails), in the space file's order.
cm_full_values <- function(x) {
  for (id in names(cm$split)) {
    parts <- x[cm$split[[id]]]
    x[cm$split[[id]]] <- NULL
    x[[id]] <- if (any(vapply(parts, function(v) length(v) == 1L && is.na(v), logical(1)))) NA
               else if (cm$full.par.set$pars[[id]]$type == "logicalvector") unlist(parts)
               else unname(parts)
  }
  cm_constant_params(cm$full.par.set, cm$constants, x)
}

# Parameters whose values reach run() as whole numbers: integer parameters without a trafo, and any
# numeric or integer parameter whose trafo gives whole numbers all over its domain (probed at 64
# points, e.g. trafo = function(x) round(2^x)). Decided once, so a parameter keeps one type.
cm_whole_valued <- function(ps) {
  ids <- character(0)
  for (p in ps$pars) {
    if (!p$type %in% c("numeric", "integer", "numericvector", "integervector")) next
    if (is.null(p$trafo)) {
      if (p$type %in% c("integer", "integervector")) ids <- c(ids, p$id)
      next
    }
    probe <- seq(0, 1, length.out = 64)
    whole <- all(vapply(probe, function(u) {
      x <- p$lower + u * (p$upper - p$lower)
      if (p$type %in% c("integer", "integervector")) x <- as.integer(round(x))
      v <- tryCatch(p$trafo(x), error = function(e) NA)
      is.numeric(v) && all(is.finite(v)) && all(v == round(v)) && all(abs(v) < .Machine$integer.max)
    }, logical(1)))
    if (whole) ids <- c(ids, p$id)
  }
  ids
}

cm_describe_space <- function(ps, searched, constants, whole) {
  pars <- lapply(ps$pars, function(p) {
    list(id = p$id, type = p$type, len = p$len, trafo = !is.null(p$trafo), requires = !is.null(p$requires),
         constant = p$id %in% names(constants), whole = p$id %in% whole,
         values = if (!is.null(p$values)) I(names(p$values)) else NULL,
         lower = if (!is.null(p$lower)) I(p$lower) else NULL, upper = if (!is.null(p$upper)) I(p$upper) else NULL)
  })
  levels <- vapply(searched$pars, function(p) if (p$type %in% c("discrete", "discretevector")) length(p$values)
                   else if (p$type %in% c("logical", "logicalvector")) 2L else 0L, integer(1))
  constant_params <- cm_finish_params(cm_constant_params(ps, constants, list()), ps, whole)
  list(params = pars, ids = I(getParamIds(ps)), searched = I(getParamIds(searched)),
       columns = I(getParamIds(searched, repeated = TRUE, with.nr = TRUE)),
       constants = if (length(constant_params)) constant_params else structure(list(), names = character(0)),
       dims = sum(getParamLengths(searched)), max_levels = max(c(0L, levels)),
       numeric_only = isNumeric(searched, include.int = TRUE), has_requires = hasRequires(searched),
       has_forbidden = hasForbidden(searched))
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
# propose_points, crit, profile ('mlrmbo' or 'fast'), iters (mlrMBO's termination: the number of
# proposal steps, which drives adaptive criteria such as adacb; cm_set_budget sets it).
cm_make_control <- function(settings) {
  k <- as.integer(settings$propose_points)
  # adacb batches are made here (cm_propose_adacb), not by mlrMBO, which has no multi-point adacb
  if (identical(settings$crit, "adacb")) k <- 1L
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
  full <- cm_load_space(space_path)
  searched <- cm_searched_space(full, space_path)
  ps <- searched$par.set
  cm$settings <- settings
  cm$full.par.set <- full
  cm$par.set <- ps
  cm$constants <- searched$constants
  cm$split <- searched$split
  cm$whole <- cm_whole_valued(full)
  cm$minimize <- !isTRUE(settings$maximize)
  cm$sync <- !identical(settings$mode, "async")
  cm$random_only <- identical(settings$optimizer, "random")
  if (!cm$sync) settings$propose_points <- 1L  # the control proposes one point; batches are made here
  if (!cm$random_only) {
    cm$control <- cm_make_control(settings)
    cm$learner <- cm_make_learner(settings, ps, cm$control)
  }
  cm$columns <- getParamIds(ps, repeated = TRUE, with.nr = TRUE)
  cm$template <- cm_template(ps)
  cm$registry <- new.env(hash = TRUE)  # id -> untransformed row, while the point is pending or in a batch
  cm$extras <- new.env(hash = TRUE)    # id -> the path extras its row enters the path with
  cm$pending <- integer(0) # ids handed out, neither told nor discarded
  cm$batch <- NULL         # sync: the open step, list(ids, y, told)
  cm$next_id <- 0L
  cm$rows <- NULL          # every committed row, in path order
  cm$raw_y <- numeric(0)   # their values as told (NA: failed)
  cm$design_rows <- NULL   # the rows initSMBO received
  cm$state <- NULL
  cm$budget <- NA_integer_
  cm$n_design <- NA_integer_
  cm$n_proposed <- 0L      # points handed out after the design (async adacb progress)
  cm$log <- character(0)
  cm$believer_cache <- NULL
  cm$hyper <- NULL         # async kriging: hyperparameters of the last estimate (cm_fit)
  cm_to_json(cm_describe_space(full, ps, cm$constants, cm$whole))
}

# A zero-row data frame with the column types mlrMBO expects for this space.
cm_template <- function(ps) {
  d <- generateDesign(2L, ps)
  d[0, , drop = FALSE]
}

# The number of evaluations the search will make in all (design included): mlrMBO's termination gets
# the real number of proposal steps, so that progress-driven criteria (adacb) move as the budget is used.
cm_set_budget <- function(budget) {
  cm$budget <- as.integer(budget)
  cm_update_iters()
  TRUE
}

cm_update_iters <- function() {
  if (cm$random_only || is.na(cm$budget) || is.na(cm$n_design)) return(invisible())
  k <- max(1L, as.integer(cm$settings$propose_points))
  iters <- max(1L, as.integer(ceiling((cm$budget - cm$n_design) / if (cm$sync) k else 1L)))
  cm$control <- setMBOControlTermination(cm$control, iters = iters)
  if (!is.null(cm$state)) {
    problem <- mlrMBO:::getOptStateOptProblem(cm$state)
    problem$control <- setMBOControlTermination(problem$control, iters = iters)
    cm_update_progress()
  }
  invisible()
}

# mlrMBO's progress as mbo() computes it after each loop: loop / iters of its termination.
cm_update_progress <- function() {
  if (!is.null(cm$state)) mlrMBO:::getOptStateTermination(cm$state)
  invisible()
}

# ---------------------------------------------------------------------------------------------------
# Points: registry and conversion to what run() receives
# ---------------------------------------------------------------------------------------------------
# Registers rows; `path_extras` are the optimization-path extras each row will be logged with when
# its result comes back (NULL: those of a design point). Returns the items handed to Python.
cm_register <- function(df, prop_type, extra = NULL, path_extras = NULL) {
  out <- vector("list", nrow(df))
  for (i in seq_len(nrow(df))) {
    cm$next_id <- cm$next_id + 1L
    id <- cm$next_id
    row <- df[i, cm$columns, drop = FALSE]
    rownames(row) <- NULL
    cm$registry[[as.character(id)]] <- row
    cm$pending <- c(cm$pending, id)
    if (!is.null(path_extras)) cm$extras[[as.character(id)]] <- path_extras[[i]]
    item <- list(id = id, x = cm_raw_x(row), params = cm_run_params(row), prop_type = prop_type[i])
    if (!is.null(extra)) item <- c(item, extra[[i]])
    out[[i]] <- item
  }
  out
}

# The registered rows of `ids`, in order, as one data frame.
cm_rows <- function(ids) {
  rows <- mget(as.character(ids), envir = cm$registry)
  out <- do.call(rbind, rows)
  rownames(out) <- NULL
  out
}

# Points that left the registry's care (entered the path, or discarded).
cm_forget <- function(ids) {
  keys <- as.character(ids)
  rm(list = intersect(keys, ls(cm$registry)), envir = cm$registry)
  rm(list = intersect(keys, ls(cm$extras)), envir = cm$extras)
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

# The constants added to a point's values (untransformed), those whose requires= fails left NA.
cm_constant_params <- function(ps, constants, x) {
  full <- c(x, constants)
  for (id in names(constants)) {
    p <- ps$pars[[id]]
    if (!is.null(p$requires) && !isTRUE(tryCatch(eval(p$requires, envir = full), error = function(e) FALSE))) {
      full[[id]] <- NA
    }
  }
  full[intersect(getParamIds(ps), names(full))]
}

# What run() receives: trafo applied, inactive parameters left out, plain values: whole-valued
# parameters as integers, vectors (numeric, integer, logical, discrete) as lists.
cm_finish_params <- function(x, ps, whole) {
  x <- Map(trafoValue, ps$pars[names(x)], x)
  x <- removeMissingValues(x)
  for (id in names(x)) {
    p <- ps$pars[[id]]
    v <- x[[id]]
    if (p$type == "discretevector") v <- unlist(unname(v), recursive = FALSE)
    if (is.list(v)) v <- unlist(v)
    if (is.factor(v)) v <- as.character(v)
    v <- unname(v)
    is_whole <- is.numeric(v) && all(is.finite(v)) && all(v == round(v)) && all(abs(v) < .Machine$integer.max)
    if (is_whole && (id %in% whole || p$type %in% c("discrete", "discretevector"))) {
      v <- as.integer(round(v))
    } else if (is.numeric(v)) {
      v <- as.numeric(v)
    }
    if (grepl("vector$", p$type) || length(v) != 1L) v <- I(v)
    x[[id]] <- v
  }
  x
}

cm_run_params <- function(row) {
  cm_finish_params(cm_full_values(dfRowToList(row, cm$par.set, 1L)), cm$full.par.set, cm$whole)
}

# Rebuild an untransformed row from its flat list (resume: the journal stores it). Columns of
# constant parameters (or of a parameter no longer searched) are ignored.
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
# Designs and random points
# ---------------------------------------------------------------------------------------------------
# Latin hypercube design (ParamHelpers' generateDesign, as mlrMBO's own default), then patched so that
# every level of every discrete and logical parameter appears at least once: a level never seen in
# training breaks the random-forest surrogate later (mlrMBO issue 454).
cm_design <- function(n, seed) {
  set.seed(seed)
  ps <- cm$par.set
  d <- generateDesign(as.integer(n), ps)
  d <- cm_patch_levels(d, ps)
  items <- cm_register(d, rep("initdesign", nrow(d)))
  cm$n_design <- nrow(d)
  cm_update_iters()
  cm_open_batch(vapply(items, function(it) it$id, integer(1)))
  cm_to_json(items)
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

# n random points: random search's proposals (reason ""), or the fallback when the surrogate cannot
# propose (prop_type 'random_fallback', the reason in 'error').
cm_random_items <- function(n, reason = "") {
  d <- cm_random_df(n)
  type <- if (nzchar(reason)) "random_fallback" else "random"
  extra <- rep(list(list(error = if (nzchar(reason)) reason else NULL)), nrow(d))
  cm_register(d, rep(type, nrow(d)), extra, if (cm$random_only) NULL else cm_design_extras(nrow(d), type))
}

cm_random <- function(n, seed, reason = "") {
  set.seed(seed)
  items <- cm_random_items(n, reason)
  cm$n_proposed <- cm$n_proposed + length(items)
  if (cm$sync) cm_open_batch(vapply(items, function(it) it$id, integer(1)))
  cm_to_json(items)
}

# ---------------------------------------------------------------------------------------------------
# Results: batches, the path, imputation
# ---------------------------------------------------------------------------------------------------
# The values the surrogate is told for raw values `y` (NA: failed): diverged values count as failed,
# failures get the worst finite value + 10% of the finite range (or 10% of max(|worst|, 1) when all
# finite values are equal), clamped to the largest double. NULL while no finite value exists.
cm_surrogate_y <- function(y) {
  y[!is.finite(y) | abs(y) > cm_diverged] <- NA_real_
  finite <- y[!is.na(y)]
  if (!length(finite)) return(NULL)
  worst <- if (cm$minimize) max(finite) else min(finite)
  step <- 0.1 * max(finite) - 0.1 * min(finite)  # each term at most 1e99: no overflow
  if (step == 0) step <- 0.1 * max(abs(worst), 1)
  value <- worst + (if (cm$minimize) step else -step)
  y[is.na(y)] <- value
  y
}

cm_open_batch <- function(ids) {
  if (!cm$sync) return(invisible())
  cm_close_batch()
  cm$batch <- list(ids = ids, y = rep(NA_real_, length(ids)), told = rep(FALSE, length(ids)))
  invisible()
}

# Enters the open batch's told rows into the path in proposal order; its rows still pending will
# enter one by one when told.
cm_close_batch <- function() {
  b <- cm$batch
  cm$batch <- NULL
  if (is.null(b) || !any(b$told)) return(invisible())
  ids <- b$ids[b$told]
  cm_commit(cm_rows(ids), b$y[b$told], lapply(ids, function(id) cm$extras[[as.character(id)]]))
  cm_forget(c(ids, b$ids[!b$told & !b$ids %in% cm$pending]))
  invisible()
}

# Adds rows with their told values to the path: the first rows with a finite value start the state
# (initSMBO with every row so far as its design); later rows are appended as one loop of mbo().
cm_commit <- function(x, y, extras) {
  rownames(x) <- NULL
  cm$rows <- if (is.null(cm$rows)) x else rbind(cm$rows, x)
  cm$raw_y <- c(cm$raw_y, y)
  cm$believer_cache <- NULL
  if (cm$random_only) return(invisible())
  surrogate_y <- cm_surrogate_y(cm$raw_y)
  if (is.null(surrogate_y)) return(invisible())  # nothing finite yet: the surrogate starts later
  if (is.null(cm$state)) {
    design <- cm$rows
    design[[cm_y_name]] <- surrogate_y
    cm$design_rows <- design
    if (is.na(cm$n_design)) cm$n_design <- nrow(design)
    cm$state <- initSMBO(par.set = cm$par.set, design = design, learner = cm$learner, control = cm$control,
                         minimize = cm$minimize, noisy = FALSE, show.info = FALSE)
    cm_update_iters()
  } else {
    cm_append_path(x, rep(NA_real_, nrow(x)), extras)
    cm_refresh_path_y(surrogate_y)
    mlrMBO:::finalizeMboLoop(cm$state)
  }
  cm_update_progress()
  invisible()
}

# Rewrites the path's objective column with the current surrogate values (failures re-imputed over
# the current range: a failure never ends up ranked among the best points).
cm_refresh_path_y <- function(surrogate_y = cm_surrogate_y(cm$raw_y)) {
  op <- mlrMBO:::getOptStateOptPath(cm$state)
  stopifnot(length(op$env$path[[cm_y_name]]) == length(surrogate_y), all(is.finite(surrogate_y)))
  op$env$path[[cm_y_name]] <- surrogate_y
  invisible()
}

# Extras conformed to those the path started with (addOptPathEl insists on the same names).
cm_conform_extras <- function(extra, template) {
  out <- lapply(names(template), function(name) {
    v <- extra[[name]]
    if (is.null(v) || length(v) != 1L) {
      if (name %in% c("error.model", "prop.type")) NA_character_ else NA_real_
    } else v
  })
  names(out) <- names(template)
  out
}

cm_design_extras <- function(n, prop_type = "initdesign") {
  extras <- mlrMBO:::getExtras(n = n, prop = NULL, train.time = NA_real_, control = cm$control)
  lapply(extras, function(e) { e$prop.type <- prop_type; e })
}

# Adds evaluated rows to an optimization path the way mbo()'s evalTargetFun does.
cm_append_path <- function(x, y, extras = NULL, opt.path = mlrMBO:::getOptStateOptPath(cm$state)) {
  ps <- cm$par.set
  xs <- lapply(dfRowsToList(x, ps), ParamHelpers::repairPoint, par.set = ps)
  template <- if (length(opt.path$env$extra)) opt.path$env$extra[[1L]] else NULL
  template <- template[!startsWith(names(template), ".")]
  dob <- mlrMBO:::getOptStateLoop(cm$state)
  for (i in seq_along(xs)) {
    extra <- if (length(extras) >= i && !is.null(extras[[i]])) extras[[i]] else cm_design_extras(1L)[[1]]
    if (!is.null(template)) extra <- cm_conform_extras(extra, template)
    addOptPathEl(opt.path, x = xs[[i]], y = y[i], dob = dob, error.message = NA_character_,
                 exec.time = NA_real_, extra = extra)
  }
  invisible(opt.path)
}

cm_item_y <- function(it) {
  if (is.null(it$y)) NA_real_ else as.numeric(it$y)
}

# items_json: [{"id": 3, "y": 0.25}, {"id": 4, "y": null}, {"x": {...}, "y": 1.5}, ...]. Rows of the
# open sync batch wait until the whole batch is told (or the next proposal), then enter in proposal
# order; any other rows enter now, in the given order. Returns the values the surrogate receives for
# them now (failures imputed over the current range; null while no run has succeeded).
cm_tell <- function(items_json) {
  items <- jsonlite::fromJSON(items_json, simplifyVector = FALSE)
  if (!length(items)) return(cm_to_json(list()))
  loose_x <- list()
  loose_y <- numeric(0)
  loose_extras <- list()
  for (it in items) {
    y <- cm_item_y(it)
    if (!is.null(it$id)) {
      id <- as.integer(it$id)
      key <- as.character(id)
      if (is.null(cm$registry[[key]]) || !id %in% cm$pending) {
        stop(sprintf("point %s is unknown, or was told or discarded already", id), call. = FALSE)
      }
      cm$pending <- setdiff(cm$pending, id)
      slot <- if (!is.null(cm$batch)) match(id, cm$batch$ids) else NA_integer_
      if (!is.na(slot)) {
        cm$batch$y[slot] <- y
        cm$batch$told[slot] <- TRUE
        next
      }
      loose_x[[length(loose_x) + 1L]] <- cm$registry[[key]]
      loose_extras[length(loose_extras) + 1L] <- list(cm$extras[[key]])
      cm_forget(id)
    } else {
      loose_x[[length(loose_x) + 1L]] <- cm_row_from_x(it$x)
      loose_extras[length(loose_extras) + 1L] <- list(NULL)
    }
    loose_y <- c(loose_y, y)
  }
  if (length(loose_x)) cm_commit(do.call(rbind, loose_x), loose_y, loose_extras)
  if (!is.null(cm$batch) && all(cm$batch$told | !cm$batch$ids %in% cm$pending)) cm_close_batch()
  ys <- vapply(items, cm_item_y, numeric(1))
  now <- cm_surrogate_y(c(cm$raw_y, ys))
  if (is.null(now)) return(cm_to_json(rep(list(NULL), length(ys))))
  cm_to_json(as.list(utils::tail(now, length(ys))))
}

# A point proposed elsewhere (another master, or an unfinished run of an earlier session) becomes
# pending here, so that proposals account for it; it is told later through the returned item's id.
cm_adopt <- function(x_json) {
  x <- jsonlite::fromJSON(x_json, simplifyVector = FALSE)
  row <- cm_row_from_x(x)
  item <- cm_register(row, "adopted", NULL, if (cm$random_only) NULL else cm_design_extras(1L, "adopted"))
  cm_to_json(item[[1]])
}

# Points that will never run: no longer pending (a sync batch then closes without them).
cm_discard <- function(ids_json) {
  ids <- as.integer(unlist(jsonlite::fromJSON(ids_json)))
  cm$pending <- setdiff(cm$pending, ids)
  if (!is.null(cm$batch)) {
    keep <- !cm$batch$ids %in% ids | cm$batch$told
    cm$batch <- list(ids = cm$batch$ids[keep], y = cm$batch$y[keep], told = cm$batch$told[keep])
    if (all(cm$batch$told)) cm_close_batch()
  }
  cm_forget(setdiff(ids, if (is.null(cm$batch)) integer(0) else cm$batch$ids))
  TRUE
}

# The extras a restored row enters the path with: its proposal type, criterion value, lambda and error.
cm_extras_from_info <- function(prop_type, info) {
  e <- cm_design_extras(1L, prop_type)[[1]]
  crit_name <- names(e)[1]
  if (!is.null(info$crit)) e[[crit_name]] <- as.numeric(info$crit)
  if (!is.null(info$lambda)) e$multipoint.cb.lambda <- as.numeric(info$lambda)
  if (!is.null(info$error)) e$error.model <- as.character(info$error)
  e
}

# Resume. items_json: the journal's tasks in dispatch order, each {"x", "y" (null: failed), "step",
# "prop_type", "info", "running" (true: dispatched, not finished; it runs again)}. Rule: items are
# grouped by step (stable: dispatch order kept within a step); step 0 is the design (initSMBO's
# design, as mbo() has it); each later step enters the path as one loop, in dispatch order, with the
# extras its proposal had, so that a seeded sync search resumed after a kill proposes what the
# uninterrupted one proposes. In sync mode the last step, when it has running items, stays open: it
# enters the path (in dispatch order) once its running items are told. Returns the running items as
# pending points, in order (to be told through their ids).
cm_restore <- function(items_json) {
  items <- jsonlite::fromJSON(items_json, simplifyVector = FALSE)
  if (!length(items)) return(cm_to_json(list()))
  steps <- vapply(items, function(it) if (is.null(it$step)) 0 else as.numeric(it$step), numeric(1))
  order_ <- order(steps, seq_along(items))
  groups <- split(order_, steps[order_])
  groups <- groups[order(as.numeric(names(groups)))]
  running_out <- list()
  last <- names(groups)[length(groups)]
  for (g in names(groups)) {
    members <- items[groups[[g]]]
    rows <- lapply(members, function(it) cm_row_from_x(it$x))
    x <- do.call(rbind, rows)
    prop_types <- vapply(members, function(it) if (is.null(it$prop_type)) "initdesign" else it$prop_type, "")
    path_extras <- if (cm$random_only) NULL else
      lapply(seq_along(members), function(i) cm_extras_from_info(prop_types[i], members[[i]]$info))
    items_here <- cm_register(x, prop_types, NULL, path_extras)
    ids <- vapply(items_here, function(it) it$id, integer(1))
    running <- vapply(members, function(it) isTRUE(it$running), logical(1))
    if (as.numeric(g) == 0) cm$n_design <- length(members)
    if (as.numeric(g) > 0) cm$n_proposed <- cm$n_proposed + length(members)
    told_ids <- ids[!running]
    ys <- vapply(members[!running], cm_item_y, numeric(1))
    if (cm$sync && g == last && any(running)) {
      cm_open_batch(ids)
      cm$batch$y[!running] <- ys
      cm$batch$told[!running] <- TRUE
      cm$pending <- setdiff(cm$pending, told_ids)
    } else if (length(told_ids)) {
      cm$pending <- setdiff(cm$pending, told_ids)
      cm_commit(x[!running, , drop = FALSE], ys, lapply(told_ids, function(id) cm$extras[[as.character(id)]]))
      cm_forget(told_ids)
    }
    running_out <- c(running_out, items_here[running])
  }
  cm_update_iters()
  cm_to_json(running_out)
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

cm_crit_id <- function(control) getMBOInfillCritId(control$infill.crit)

# The lambda adacb uses at the state's progress (mlrMBO's own formula; start/end set by initSMBO).
cm_adacb_lambda <- function(control) {
  params <- control$infill.crit$params
  progress <- mlrMBO:::getOptStateProgress(cm$state)
  if (is.null(progress)) progress <- 0
  progress <- min(max(progress, 0), 1)
  (1 - progress) * params$cb.lambda.start + progress * params$cb.lambda.end
}

# k points from one model, one confidence-bound search per lambda (as mlrMBO's multi-point 'cb'),
# labelled with the criterion asked for (cb or adacb).
cm_propose_lambdas <- function(lambdas, control, opt.path, models, designs) {
  props <- lapply(lambdas, function(lambda) {
    ctrl <- control
    ctrl$propose.points <- 1L
    ctrl$infill.crit <- makeMBOInfillCritCB(cb.lambda = lambda)
    mlrMBO:::proposePointsByInfillOptimization(cm$state, control = ctrl, opt.path = opt.path, models = models,
                                               designs = designs)
  })
  prop <- mlrMBO:::joinProposedPoints(props)
  prop$multipoint.cb.lambdas <- lambdas
  prop$prop.type <- rep(paste0("infill_", cm_crit_id(control)), length(lambdas))
  prop
}

# A sync batch for adacb (mlrMBO has no multi-point adacb): k CB points with lambda = adacb's value at
# the current progress times Exp(1) draws, so the batch spreads around the adaptive value.
cm_propose_adacb <- function(k) {
  control <- mlrMBO:::getOptStateOptProblem(cm$state)$control
  lambdas <- cm_adacb_lambda(control) * stats::rexp(k)
  models <- mlrMBO:::getOptStateModels(cm$state)$models
  cm_propose_lambdas(lambdas, control, mlrMBO:::getOptStateOptPath(cm$state), models,
                     mlrMBO:::getOptStateDesigns(cm$state))
}

# k points. Sync: mlrMBO's proposePoints on the state (a batch of k). Async: cm_propose_async. Any
# surrogate error gives random points instead (prop_type 'random_fallback', the error in 'error').
cm_propose <- function(k, seed) {
  k <- as.integer(k)
  if (cm$sync) cm_close_batch()
  if (cm$random_only) return(cm_random(k, seed, ""))
  if (!cm$sync && cm_finite_count() < cm_warmup()) return(cm_random(k, seed, ""))
  if (is.null(cm$state)) {
    return(cm_random(k, seed, "no successful run yet: the surrogate cannot be fitted"))
  }
  if (!cm$sync) return(cm_propose_async(k, seed))
  problem <- mlrMBO:::getOptStateOptProblem(cm$state)
  if (length(cm$raw_y) > cm_fit_cap(problem$learner)) return(cm_propose_capped(k, seed))
  saved <- problem$control
  problem$control$propose.points <- k
  if (k > 1L && is.null(problem$control$multipoint.method)) {
    method <- if (cm_crit_id(problem$control) %in% c("ei", "aei")) "cl" else "cb"
    problem$control <- setMBOControlMultiPoint(problem$control, method = method)
  }
  set.seed(seed)
  prop <- tryCatch({
    cm_injected_fault()
    if (k > 1L && identical(cm_crit_id(problem$control), "adacb")) cm_propose_adacb(k) else proposePoints(cm$state)
  }, error = function(e) e)
  control <- problem$control
  problem$control <- saved
  if (inherits(prop, "error")) {
    msg <- conditionMessage(prop)
    cm$log <- c(cm$log, sprintf("surrogate failed (%s); random points instead", msg))
    return(cm_random(k, seed, msg))
  }
  n <- nrow(prop$prop.points)
  train.time <- mlrMBO:::getOptStateModels(cm$state)$train.time
  path_extras <- mlrMBO:::getExtras(n = n, prop = prop, train.time = train.time, control = control)
  items <- cm_register(prop$prop.points, prop$prop.type, cm_proposal_items(prop, n), path_extras)
  cm$n_proposed <- cm$n_proposed + length(items)
  cm_open_batch(vapply(items, function(it) it$id, integer(1)))
  cm_to_json(items)
}

# Async: results that must have succeeded before the surrogate proposes (a kriging fit on two or
# three points mostly proposes the corners): settings$warmup, else half the design (at least 2).
# Until then propose() gives random points (prop_type 'random').
cm_warmup <- function() {
  if (!is.null(cm$settings$warmup)) return(as.integer(cm$settings$warmup))
  if (is.na(cm$n_design)) 2L else max(2L, as.integer(ceiling(cm$n_design / 2)))
}

cm_finite_count <- function() {
  y <- cm$raw_y
  sum(is.finite(y) & abs(y) <= cm_diverged)
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
# prediction there of the surrogate fitted on the finished points, which shrinks its uncertainty
# around running points without inventing an optimum or a wall. That fit is cached until the path
# changes (the next tell), so proposals between two tells fit it once.
cm_lies <- function(rows, opt.path, control, learner) {
  if (!identical(cm$settings$lie, "believer")) return(rep(cm_lie(), nrow(rows)))
  model <- cm$believer_cache
  if (is.null(model)) {
    model <- cm_fit(learner, mlrMBO:::makeTaskSingleObj(opt.path, control), length(cm$raw_y))
    cm$believer_cache <- model
  }
  newdata <- BBmisc::convertDataFrameCols(rows, ints.as.num = TRUE, logicals.as.factor = TRUE)
  getPredictionResponse(predict(model, newdata = newdata))
}

# The most rows a surrogate is fitted on (finished points plus pending ones), so that a proposal
# stays fast as the history grows: a kriging fit is O(n^3) per likelihood evaluation (about 1.6 s
# at 200 rows and 24 s at 500 on this machine); a forest's jackknife predictions grow linearly (a
# batch of 8 takes about 2 s at 300 rows, 6 s at 1000). settings$max_fit_rows overrides.
cm_fit_cap <- function(learner) {
  if (!is.null(cm$settings$max_fit_rows)) return(as.integer(cm$settings$max_fit_rows))
  if (cm_is_km(learner)) 200L else 300L
}

cm_is_km <- function(learner) "coef.cov" %in% getParamIds(getParamSet(learner))

# Rows of the path a capped fit keeps: the best half of the allowance by value (where the search
# goes), then the rest chosen greedily to be as far as possible from those already kept (maximin in
# the unit-scaled space; a level or an inactive value is a coordinate of its own), so the model
# still sees the whole space. Kept in path order. (Hartmann-6, a cap of 48 at budget 112, median of
# 5 seeds: best half -3.291, the uncapped fit -3.291, best quarter -3.195, best three quarters
# -3.236; settings$fit_best_share overrides.)
cm_subsample <- function(op, m) {
  d <- op$env$path
  n <- nrow(d)
  if (n <= m) return(seq_len(n))
  y <- d[[cm_y_name]]
  share <- if (is.null(cm$settings$fit_best_share)) 0.5 else as.numeric(cm$settings$fit_best_share)
  best <- order(if (cm$minimize) y else -y)[seq_len(max(1L, ceiling(m * share)))]
  X <- cm_unit_matrix(d)
  chosen <- best
  mind <- rep(Inf, n)
  for (i in best) mind <- pmin(mind, sqrt(colSums((t(X) - X[i, ])^2)))
  mind[chosen] <- -1
  while (length(chosen) < m) {
    j <- which.max(mind)
    chosen <- c(chosen, j)
    mind <- pmin(mind, sqrt(colSums((t(X) - X[j, ])^2)))
    mind[chosen] <- -1
  }
  sort(chosen)
}

cm_unit_matrix <- function(d) {
  cols <- list()
  for (p in cm$par.set$pars) {
    ids <- getParamIds(makeParamSet(p), repeated = TRUE, with.nr = TRUE)
    for (col in ids) {
      v <- d[[col]]
      if (p$type %in% c("numeric", "integer", "numericvector", "integervector")) {
        i <- match(col, ids)
        lo <- p$lower[min(i, length(p$lower))]
        hi <- p$upper[min(i, length(p$upper))]
        u <- if (hi > lo) (as.numeric(v) - lo) / (hi - lo) else rep(0, length(v))
        u[is.na(u)] <- -1
        cols[[col]] <- u
      } else {
        v <- as.character(v)
        v[is.na(v)] <- "<inactive>"
        for (level in unique(v)) cols[[paste(col, level)]] <- as.numeric(v == level)
      }
    }
  }
  do.call(cbind, cols)
}

# A copy of the path for one fit: capped (cm_subsample), with `reserve` rows left for pending points.
cm_fit_path <- function(learner, reserve = 0L) {
  op <- mlrMBO:::deepCopyOptPath(mlrMBO:::getOptStateOptPath(cm$state))
  cap <- cm_fit_cap(learner)
  n <- nrow(op$env$path)
  allowance <- max(cap - min(reserve, cap %/% 2), 10L)
  if (n > allowance) {
    keep <- cm_subsample(op, allowance)
    op$env$path <- op$env$path[keep, , drop = FALSE]
    op$env$dob <- op$env$dob[keep]
    op$env$eol <- op$env$eol[keep]
  }
  op
}

# Trains the surrogate. In async mode kriging re-estimates its hyperparameters (covariance ranges
# and variance) only when the finished points have grown by 10% since the last estimate; other fits
# keep them (the trend is still estimated), which is linear algebra only (milliseconds, see
# cm_fit_cap). Sync mode estimates on every fit, as mbo() does.
cm_fit <- function(learner, task, n_finished) {
  if (!cm$sync && cm_is_km(learner) && !is.null(cm$hyper) && n_finished < 1.1 * cm$hyper$n &&
      !isFALSE(cm$settings$reuse_hyper)) {
    return(train(setHyperPars(learner, coef.cov = cm$hyper$cov, coef.var = cm$hyper$var), task))
  }
  model <- train(learner, task)
  km <- model$learner.model
  if (inherits(km, "km")) cm$hyper <- list(cov = km@covariance@range.val, var = km@covariance@sd2, n = n_finished)
  model
}

# Fixed-hyperparameter refit (a believed point added), for the sequential believer.
cm_refit <- function(learner, model, task) {
  km <- model$learner.model
  if (inherits(km, "km")) {
    return(train(setHyperPars(learner, coef.cov = km@covariance@range.val, coef.var = km@covariance@sd2), task))
  }
  train(learner, task)
}

# k points from one surrogate fit on `op` (finished points, and pending ones under their lies). How
# (settings$batch, async default 'lambdas'): 'lambdas' - one confidence-bound search per lambda,
# Exp(1) draws for cb (as mlrMBO's multi-point cb), adacb's value times Exp(1) draws for adacb;
# 'believer' - each point is entered with the model's prediction (refit, hyperparameters kept)
# before the next is searched, with the criterion's own lambda; 'both' - drawn lambdas and the
# believer. Criteria outside the cb family always use the believer.
cm_propose_from <- function(k, op, control, learner) {
  crit_id <- cm_crit_id(control)
  task <- mlrMBO:::makeTaskSingleObj(op, control)
  model <- cm_fit(learner, task, length(cm$raw_y))
  method <- if (is.null(cm$settings$batch)) "lambdas" else cm$settings$batch
  lambdas <- NULL
  if (crit_id %in% c("cb", "adacb") && (k > 1L || isTRUE(cm$settings$random_lambda) || cm$sync)) {
    lambdas <- stats::rexp(k)
    if (crit_id == "adacb") lambdas <- cm_adacb_lambda(control) * lambdas
    if (method == "lambdas") return(cm_propose_lambdas(lambdas, control, op, list(model), list(getTaskData(task))))
    if (method == "believer") lambdas <- NULL
  }
  cm_propose_believed(k, control, op, learner, model, task, lambdas)
}

# Async: the path (capped) plus the pending points under their lies, one surrogate fit, k points.
cm_propose_async <- function(k, seed) {
  problem <- mlrMBO:::getOptStateOptProblem(cm$state)
  control1 <- problem$control  # initialized by initSMBO (e.g. the CB lambda chosen for this space)
  control1$propose.points <- 1L
  control1$multipoint.method <- NULL
  learner <- problem$learner
  set.seed(seed)
  if (!is.na(cm$budget) && !is.na(cm$n_design)) {
    # async progress for adacb: the share of the proposals after the design handed out so far
    left <- max(1L, cm$budget - cm$n_design)
    mlrMBO:::setOptStateProgress(cm$state, min(1, (cm$n_proposed + 1) / left))
  }
  prop <- tryCatch({
    cm_injected_fault()
    pending <- if (identical(cm$settings$lie, "none")) integer(0) else cm$pending
    op <- cm_fit_path(learner, reserve = length(pending))
    if (length(pending)) {
      cap <- cm_fit_cap(learner)
      if (length(pending) > cap %/% 2) pending <- utils::tail(pending, cap %/% 2)  # the latest ones
      # as mlrMBO's own constant liar does: x and the lie only (a copied path keeps no extras)
      rows <- cm_rows(pending)
      lies <- tryCatch(cm_lies(rows, op, control1, learner), error = function(e) rep(cm_lie(), nrow(rows)))
      cm_add_rows(op, rows, lies)
    }
    cm_propose_from(k, op, control1, learner)
  }, error = function(e) e)
  cm_to_json(cm_register_proposal(prop, k, control1))
}

# Sync with more finished points than a fit may take: the same one-fit proposal on a capped path.
cm_propose_capped <- function(k, seed) {
  problem <- mlrMBO:::getOptStateOptProblem(cm$state)
  control1 <- problem$control
  control1$propose.points <- 1L
  control1$multipoint.method <- NULL
  set.seed(seed)
  prop <- tryCatch({
    cm_injected_fault()
    cm_propose_from(k, cm_fit_path(problem$learner), control1, problem$learner)
  }, error = function(e) e)
  items <- cm_register_proposal(prop, k, control1)
  cm_open_batch(vapply(items, function(it) it$id, integer(1)))
  cm_to_json(items)
}

cm_register_proposal <- function(prop, k, control) {
  if (inherits(prop, "error")) {
    msg <- conditionMessage(prop)
    cm$log <- c(cm$log, sprintf("surrogate failed (%s); random point%s instead", msg, if (k > 1) "s" else ""))
    items <- cm_random_items(k, msg)
  } else {
    n <- nrow(prop$prop.points)
    path_extras <- mlrMBO:::getExtras(n = n, prop = prop, train.time = NA_real_, control = control)
    items <- cm_register(prop$prop.points, prop$prop.type, cm_proposal_items(prop, n), path_extras)
  }
  cm$n_proposed <- cm$n_proposed + length(items)
  items
}

cm_add_rows <- function(op, rows, y) {
  xs <- lapply(dfRowsToList(rows, cm$par.set), ParamHelpers::repairPoint, par.set = cm$par.set)
  dob <- mlrMBO:::getOptStateLoop(cm$state)
  for (i in seq_along(xs)) addOptPathEl(op, x = xs[[i]], y = y[i], dob = dob)
  invisible(op)
}

# k points from the criterion (or CB with `lambdas`), each entered with the model's prediction
# (believer) before the next is searched.
cm_propose_believed <- function(k, control, op, learner, model, task, lambdas = NULL) {
  props <- list()
  for (j in seq_len(k)) {
    ctrl <- control
    if (!is.null(lambdas)) ctrl$infill.crit <- makeMBOInfillCritCB(cb.lambda = lambdas[j])
    props[[j]] <- mlrMBO:::proposePointsByInfillOptimization(cm$state, control = ctrl, opt.path = op,
                                                             models = list(model), designs = list(getTaskData(task)))
    if (j == k) break
    point <- props[[j]]$prop.points
    newdata <- BBmisc::convertDataFrameCols(point, ints.as.num = TRUE, logicals.as.factor = TRUE)
    cm_add_rows(op, point, getPredictionResponse(predict(model, newdata = newdata)))
    task <- mlrMBO:::makeTaskSingleObj(op, control)
    model <- cm_refit(learner, model, task)
  }
  prop <- mlrMBO:::joinProposedPoints(props)
  prop$prop.type <- rep(paste0("infill_", cm_crit_id(control)), k)
  if (!is.null(lambdas)) prop$multipoint.cb.lambdas <- lambdas
  prop
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

# Saves the mlrMBO optimization path (as an OptPath object and as a data frame), the searched space,
# its constants and the exact design rows to an .rds file (R/mbo_reference.R reads the design there).
cm_save_path <- function(file) {
  if (is.null(cm$state)) return(FALSE)
  op <- mlrMBO:::getOptStateOptPath(cm$state)
  saveRDS(list(opt.path = op, data = as.data.frame(op), par.set = cm$par.set, constants = cm$constants,
               control = cm$control, design = cm$design_rows), file)
  TRUE
}
