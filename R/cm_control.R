# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Control and learner: the infill criterion, mlrMBO's control, the surrogate learner, the setup of
# one optimizer (cm_setup) and the budget it searches within.

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
  cm$named <- searched$named
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
  cm$n_design_given <- FALSE  # set by cm_set_budget: then no design or result changes it
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
# `n_design`: the design's size, given to every master (an optimizer rank that did not make the design
# would otherwise take the rows it has at its first result for it: its warm-up and adacb's progress
# would differ from master 0's); once given, it is the design size whatever this master has seen.
cm_set_budget <- function(budget, n_design = NA_integer_) {
  cm$budget <- as.integer(budget)
  if (!is.na(n_design)) {
    cm$n_design <- as.integer(n_design)
    cm$n_design_given <- TRUE
  }
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
