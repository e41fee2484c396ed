# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# The search space: loading a space file, checking it, and the space as the surrogate sees it
# (constants out, discrete vectors split).

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
  # a numeric or logical constant enters an expression as its value; a discrete one as its level's name
  # (values = list(adam = "Adam"): opt == "adam"), the way ParamHelpers evaluates requires= on a design
  subst <- lapply(names(constants), function(id) {
    p <- ps$pars[[id]]
    if (p$type == "discrete") names(p$values)[1]
    else if (p$type == "discretevector") rep(names(p$values)[1], p$len)
    else constants[[id]]
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
  # A discrete parameter that requires= or forbidden= mentions, whose level names differ from its values
  # (values = list(adam = "Adam")), is searched over its names: an expression compares names (as in a
  # ParamHelpers design), and mlrMBO's optimization path checks a point's values against them, which
  # would refuse every point whose value is not its name. run() still gets the value (cm_full_values).
  mentioned <- unique(unlist(lapply(c(lapply(searched$pars, function(p) p$requires), list(searched$forbidden)),
                                    function(e) if (is.null(e)) character(0) else all.vars(e))))
  named <- character(0)
  for (id in intersect(names(searched$pars), mentioned)) {
    p <- searched$pars[[id]]
    if (p$type != "discrete") next
    level_names <- names(p$values)
    if (all(vapply(seq_along(p$values), function(i) identical(p$values[[i]], level_names[i]), logical(1)))) next
    p$values <- stats::setNames(as.list(level_names), level_names)
    if (!is.null(p$default)) p$default <- discreteValueToName(searched$pars[[id]], p$default)
    searched$pars[[id]] <- p
    named <- c(named, id)
  }
  list(par.set = searched, constants = constants, split = split, named = named)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# The discrete vector parameter a split element (activations1) belongs to.
cm_split_owner <- function(element) {
  for (id in names(cm$split)) if (element %in% cm$split[[id]]) return(id)
  NA_character_
}

# A point of the searched space (dfRowToList) as values of the space file's parameters: split vectors
# joined, constants added (NA where their requires= fails), in the space file's order.
cm_full_values <- function(x) {
  for (id in cm$named) {  # searched by level name (cm_searched_space): the level's value
    v <- x[[id]]
    if (length(v) == 1L && !is.na(v)) {
      whole <- cm$full.par.set$pars[[id]] %||% cm$full.par.set$pars[[cm_split_owner(id)]]
      x[id] <- list(whole$values[[v]])
    }
  }
  for (id in names(cm$split)) {
    parts <- x[cm$split[[id]]]
    x[cm$split[[id]]] <- NULL
    x[[id]] <- if (any(vapply(parts, function(v) length(v) == 1L && is.na(v), logical(1)))) NA
               else if (cm$full.par.set$pars[[id]]$type == "logicalvector") unlist(parts)
               else unname(parts)
  }
  cm_constant_params(cm$full.par.set, cm$constants, x)
}

# A discrete parameter (no trafo) whose levels are all single numbers: its values keep one type, int when
# every level is whole (values = c(16, 32, 64)), float otherwise (values = c(0.5, 1, 2)), never one per level.
cm_numeric_levels <- function(p) {
  p$type %in% c("discrete", "discretevector") && is.null(p$trafo) && length(p$values) > 0 &&
    all(vapply(p$values, function(v) is.numeric(v) && length(v) == 1L, logical(1)))
}

# Parameters whose values reach run() as whole numbers: integer parameters without a trafo, and any
# numeric or integer parameter whose trafo gives whole numbers all over its domain (probed at 64
# points, e.g. trafo = function(x) round(2^x)). Decided once, so a parameter keeps one type.
cm_whole_valued <- function(ps) {
  ids <- character(0)
  for (p in ps$pars) {
    if (cm_numeric_levels(p)) {
      v <- unlist(p$values)
      if (all(is.finite(v)) && all(v == round(v)) && all(abs(v) < .Machine$integer.max)) ids <- c(ids, p$id)
      next
    }
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
