# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Feeding results back: sync batches, the optimization path, adopted and discarded points, a resumed
# journal's points, and the imputation of failures before every fit.

# The divergence fence: the single definition of "beyond the ok runs' range" (the same formula, with
# the same constants, is candle_mbo/reporting/plots.py's divergence_fence, which the figures clip at).
# From the ok values `y` (finite): median + k x spread on the worse side (above when minimizing, below
# when maximizing), spread = max(1.4826 x MAD, 0.1 x |median|) (the floor keeps a tight cluster from
# fencing off runs that are merely bad). NA (no fence) with fewer than cm_fence_min values or no spread.
# k = 100 is far beyond any legitimate spread of a search (Tukey's far fence is about 4.5 spreads) and
# far below diverged values (1e13 and more against losses of order 1): see docs/user-guide.md, section 4.
cm_fence_k <- 100
cm_fence_min <- 4L
cm_fence <- function(y, minimize = cm$minimize, k = cm_fence_k) {
  y <- y[is.finite(y)]
  if (length(y) < cm_fence_min) return(NA_real_)
  med <- stats::median(y)
  spread <- max(1.4826 * stats::median(abs(y - med)), 0.1 * abs(med))
  if (!is.finite(spread) || !(spread > 0)) return(NA_real_)
  if (minimize) med + k * spread else med - k * spread
}

# --objective-transform log: the surrogate sees log10(y). A value log cannot take (y <= 0) enters one
# decade below the smallest positive value (so it keeps its rank: best when minimizing, worst when
# maximizing); with no positive value at all, values enter untransformed.
cm_transform_y <- function(y) {
  if (!identical(cm$settings$objective_transform, "log")) return(y)
  ok <- !is.na(y)
  positive <- y[ok & y > 0]
  if (!length(positive)) return(y)
  floor_ <- min(positive) / 10
  y[ok & y <= 0] <- floor_
  log10(y)
}

# The values the surrogate is told for raw values `y` (NA: failed), recomputed before every fit:
# diverged values (|y| > cm_diverged, non-finite) count as failed; the rest are transformed
# (cm_transform_y) and capped at the divergence fence (cm_fence of the transformed ok values; values
# beyond it enter as the fence: settings$objective_cap = FALSE turns the cap off, settings$fence_k
# changes k); failures get the worst capped value + 10% of the capped range (or 10% of
# max(|worst|, 1) when all values are equal), clamped to the largest double. NULL while no finite
# value exists.
cm_surrogate_y <- function(y) {
  y[!is.finite(y) | abs(y) > cm_diverged] <- NA_real_
  y <- cm_transform_y(y)
  finite <- y[!is.na(y)]
  if (!length(finite)) return(NULL)
  if (!isFALSE(cm$settings$objective_cap)) {
    k <- if (is.null(cm$settings$fence_k)) cm_fence_k else as.numeric(cm$settings$fence_k)
    fence <- cm_fence(finite, cm$minimize, k)
    if (!is.na(fence)) {
      beyond <- !is.na(y) & (if (cm$minimize) y > fence else y < fence)
      y[beyond] <- fence
      finite <- y[!is.na(y)]
    }
  }
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
  cm_appending(opt.path, for (i in seq_along(xs)) {
    extra <- if (length(extras) >= i && !is.null(extras[[i]])) extras[[i]] else cm_design_extras(1L)[[1]]
    if (!is.null(template)) extra <- cm_conform_extras(extra, template)
    addOptPathEl(opt.path, x = xs[[i]], y = y[i], dob = dob, error.message = NA_character_,
                 exec.time = NA_real_, extra = extra)
  })
  invisible(opt.path)
}

# Evaluates `adding` (addOptPathEl calls on `opt.path`) against empty copies of the path's table and
# columns, and binds the new rows to them once: addOptPathEl binds each row to the whole table and
# copies each column vector, which made a tell of k results cost k copies of a long history (6 ms a
# result at 16,000; docs/performance.md, "One master's throughput").
cm_appending <- function(opt.path, adding) {
  env <- opt.path$env
  fields <- Filter(function(f) !is.null(env[[f]]), c("path", "dob", "eol", "extra", "error.message", "exec.time"))
  before <- mget(fields, envir = env)
  for (f in fields) env[[f]] <- if (f == "path") before$path[0L, , drop = FALSE] else before[[f]][0L]
  on.exit(for (f in fields) {
    env[[f]] <- if (f == "path") rbind(before$path, env$path) else c(before[[f]], env[[f]])
  })
  force(adding)
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

# Many adopted points in one call (another master's batch): registered as cm_adopt does, without the
# run parameters nobody asks for; returns their ids, in order. One R call per point made each master
# spend about 4 ms per point every other master proposed, which capped several masters' throughput.
cm_adopt_many <- function(xs_json) {
  xs <- jsonlite::fromJSON(xs_json, simplifyVector = FALSE)
  extras <- if (cm$random_only) NULL else cm_design_extras(1L, "adopted")[[1]]
  ids <- vapply(xs, function(x) cm_enter(cm_row_from_x(x), extras), integer(1))
  cm$pending <- c(cm$pending, ids)
  cm_to_json(as.list(ids))
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
    if (as.numeric(g) == 0 && !cm$n_design_given) cm$n_design <- length(members)
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
