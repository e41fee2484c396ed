# candle_mbo's R side, part of R/candle_mbo.R (which sources the parts in order into one environment).
#
# Points: the registry of every point handed to Python, and the conversion of a searched row into
# what run() receives (trafo applied, constants put back, vectors joined, whole numbers as integers).

# Registers rows; `path_extras` are the optimization-path extras each row will be logged with when
# its result comes back (NULL: those of a design point). Returns the items handed to Python.
cm_register <- function(df, prop_type, extra = NULL, path_extras = NULL) {
  out <- vector("list", nrow(df))
  for (i in seq_len(nrow(df))) {
    id <- cm_enter(df[i, , drop = FALSE], if (is.null(path_extras)) NULL else path_extras[[i]])
    cm$pending <- c(cm$pending, id)
    row <- cm$registry[[as.character(id)]]
    item <- list(id = id, x = cm_raw_x(row), params = cm_run_params(row), prop_type = prop_type[i])
    if (!is.null(extra)) item <- c(item, extra[[i]])
    out[[i]] <- item
  }
  out
}

# One row into the registry under a new id (with the path extras it will enter the path with); the
# caller makes it pending. Returns the id.
cm_enter <- function(row, path_extras = NULL) {
  cm$next_id <- cm$next_id + 1L
  id <- cm$next_id
  row <- row[, cm$columns, drop = FALSE]
  rownames(row) <- NULL
  cm$registry[[as.character(id)]] <- row
  if (!is.null(path_extras)) cm$extras[[as.character(id)]] <- path_extras
  id
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
  # looked up key by key: listing the registry (thousands of running points) made a tell cost ~10 ms a point
  keys <- as.character(ids)
  for (env in list(cm$registry, cm$extras)) {
    present <- keys[vapply(keys, exists, logical(1), envir = env, inherits = FALSE)]
    if (length(present)) rm(list = present, envir = env)
  }
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
# requires= is evaluated on level names, as ParamHelpers does (cm_level_names).
cm_constant_params <- function(ps, constants, x) {
  full <- c(x, constants)
  named <- cm_level_names(ps, full)
  for (id in names(constants)) {
    p <- ps$pars[[id]]
    if (!is.null(p$requires) && !isTRUE(tryCatch(eval(p$requires, envir = named), error = function(e) FALSE))) {
      full[[id]] <- NA
    }
  }
  full[intersect(getParamIds(ps), names(full))]
}

# `x` (values, as dfRowToList gives them) with every discrete value replaced by its level's name: what a
# requires= expression compares (ParamHelpers evaluates them on a design's level names).
cm_level_names <- function(ps, x) {
  for (id in intersect(names(x), getParamIds(ps))) {
    p <- ps$pars[[id]]
    v <- x[[id]]
    if (!p$type %in% c("discrete", "discretevector") || (length(v) == 1L && !is.list(v) && is.na(v))) next
    x[[id]] <- discreteValueToName(p, v)
  }
  x
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
    # discrete levels that are all numbers have one type, the one they declare (cm_whole_valued: ints when
    # every level is whole); other discrete levels keep their own
    per_level <- p$type %in% c("discrete", "discretevector") && !cm_numeric_levels(p)
    if (is_whole && (id %in% whole || per_level)) {
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
