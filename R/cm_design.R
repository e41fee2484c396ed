# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Designs and random points: the initial design (every discrete level present) and random points
# (random search, warm-up, fallback when a fit fails).

# Latin hypercube design (ParamHelpers' generateDesign, as mlrMBO's own default), then patched so that
# every level of every discrete and logical parameter appears at least once: a level never seen in
# training breaks the random-forest surrogate later (mlrMBO issue 454).
cm_design <- function(n, seed) {
  set.seed(seed)
  ps <- cm$par.set
  d <- generateDesign(as.integer(n), ps)
  d <- cm_patch_levels(d, ps)
  items <- cm_register(d, rep("initdesign", nrow(d)))
  if (!cm$n_design_given) cm$n_design <- nrow(d)
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
