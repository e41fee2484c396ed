# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Proposals: sync batches through proposePoints, async batches from one fit (believer or lambdas),
# capped fits for long histories.

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
# labelled with the criterion asked for (cb or adacb). The smallest lambda gets mlrMBO's own infill
# search; the other lambdas pick from one shared candidate pool (cm_pool_points) unless
# settings$later_infill is 'focussearch' (a search each: about 0.08 s a point, so that one master could
# not feed thousands of workers; docs/performance.md, "One master's throughput").
cm_propose_lambdas <- function(lambdas, control, opt.path, models, designs) {
  one <- function(lambda) {
    ctrl <- control
    ctrl$propose.points <- 1L
    ctrl$infill.crit <- makeMBOInfillCritCB(cb.lambda = lambda)
    mlrMBO:::proposePointsByInfillOptimization(cm$state, control = ctrl, opt.path = opt.path, models = models,
                                               designs = designs)
  }
  if (length(lambdas) > 1L && !identical(cm$settings$later_infill, "focussearch")) {
    # the smallest lambda (the most exploiting point, where a precise optimum matters most) searches
    lambdas <- sort(lambdas)
    first <- one(lambdas[1])
    props <- list(first, cm_pool_points(lambdas[-1], control, models[[1]], first$prop.points))
  } else {
    props <- lapply(lambdas, one)
  }
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
  cm_appending(op, for (i in seq_along(xs)) addOptPathEl(op, x = xs[[i]], y = y[i], dob = dob))
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

# The later points of a lambdas batch from one candidate pool, predicted twice in all instead of a
# focus search per point: random points over the whole space, then points in boxes around each
# distinct winner (and the first point) at three finer scales (a quarter, an eighth and a sixteenth of
# each range on either side, as a focus search narrows; a discrete value kept or redrawn). Each lambda
# takes the best confidence bound among the distinct candidates not taken yet in this batch (all of
# them again once a small discrete space runs out). Returns a mlrMBO proposal of length(lambdas) points.
cm_pool_points <- function(lambdas, control, model, first) {
  started <- proc.time()[["elapsed"]]
  ps <- cm$par.set
  size <- if (is.null(cm$settings$pool_size)) 600L else as.integer(cm$settings$pool_size)
  sign <- if (control$minimize) 1 else -1
  global <- generateDesign(size, ps, lhs::randomLHS)
  stats <- cm_pool_predict(model, global)
  winners <- unique(vapply(lambdas, function(l) which.min(sign * stats$mean - l * stats$se), integer(1)))
  centers <- rbind(first[, names(global), drop = FALSE], global[winners, , drop = FALSE])
  local <- do.call(rbind, lapply(seq_len(nrow(centers)), function(i) {
    x <- dfRowToList(mlrMBO:::recodeTypes(centers[i, , drop = FALSE], ps), ps, 1L)
    scales <- lapply(c(4, 8, 16), function(scale) generateDesign(50L, cm_focus_set(ps, x, scale), lhs::randomLHS))
    do.call(rbind, scales)
  }))
  pool <- rbind(global, local)
  stats <- rbind(stats, cm_pool_predict(model, local))
  distinct <- !duplicated(rbind(first[, names(pool), drop = FALSE], pool))[-1L]
  if (!any(distinct)) distinct[1L] <- TRUE  # a space of one point: repeat it
  pool <- pool[distinct, , drop = FALSE]
  stats <- stats[distinct, , drop = FALSE]
  taken <- logical(nrow(pool))
  chosen <- integer(length(lambdas))
  crit <- numeric(length(lambdas))
  for (j in seq_along(lambdas)) {
    if (all(taken)) taken[] <- FALSE
    values <- sign * stats$mean - lambdas[j] * stats$se
    values[taken] <- Inf
    chosen[j] <- which.min(values)
    crit[j] <- values[chosen[j]]
    taken[chosen[j]] <- TRUE
  }
  points <- mlrMBO:::recodeTypes(pool[chosen, , drop = FALSE], ps)
  rownames(points) <- NULL
  n <- length(lambdas)
  seconds <- (proc.time()[["elapsed"]] - started) / n
  mlrMBO:::makeProposal(control = control, prop.points = points, propose.time = rep(seconds, n),
                        prop.type = rep(paste0("infill_", cm_crit_id(control)), n),
                        crit.vals = matrix(crit, ncol = 1L),
                        crit.components = data.frame(se = stats$se[chosen], mean = stats$mean[chosen],
                                                     lambda = lambdas))
}

cm_pool_predict <- function(model, design) {
  newdata <- BBmisc::convertDataFrameCols(design, ints.as.num = TRUE, logicals.as.factor = TRUE)
  p <- predict(model, newdata = newdata)$data
  data.frame(mean = p$response, se = p$se)
}

# The par.set narrowed around `x` as a focus search narrows it: numeric ranges to range/scale on either
# side (integers widened to whole bounds), a discrete parameter kept at its value half the time.
cm_focus_set <- function(ps, x, scale) {
  ps$pars <- lapply(ps$pars, function(par) {
    v <- x[[par$id]]
    if (BBmisc::isScalarNA(v) || is.null(v)) return(par)
    if (isNumeric(par)) {
      half <- (par$upper - par$lower) / scale
      par$lower <- pmax(par$lower, v - half)
      par$upper <- pmin(par$upper, v + half)
      if (isInteger(par)) {
        par$lower <- floor(par$lower)
        par$upper <- ceiling(par$upper)
      }
    } else if (par$type %in% c("discrete", "logical") && stats::runif(1) < 0.5) {
      name <- if (is.character(v) || is.logical(v)) as.character(v) else discreteValueToName(par, v)
      par$values <- par$values[names(par$values) %in% name]
    }
    par
  })
  ps
}
