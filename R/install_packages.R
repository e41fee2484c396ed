# Installs the CRAN packages candle_mbo needs that Debian does not ship, at pinned versions.
#
#   Rscript R/install_packages.R            (run by `make setup`; idempotent)
#
# Each package lists acceptable versions, preferred first. A tarball is looked up in CRAN's current
# src/contrib/ and then in src/contrib/Archive/<pkg>/, because CRAN moves a package to the archive
# when it is superseded or removed (smoof 1.6.0.3 and mlrMBO 1.1.5.1 were archived in July 2026).
# The other dependencies (mlr, ParamHelpers, lhs, randomForest, rgenoud, RcppArmadillo, ...) come
# from Debian's r-cran-* packages, built for this R.

pins <- list(
  DiceKriging = c("1.6.1", "1.6.0"),
  smoof       = c("1.7.0", "1.6.0.3"),
  mlrMBO      = c("1.1.6", "1.1.5.1")
)
# CRAN packages that only the archived fallback versions import (smoof 1.6.0.3).
fallback_imports <- list(smoof = c("RJSONIO", "mco"))

repo <- Sys.getenv("CRAN_MIRROR", unname(getOption("repos")["CRAN"]))
if (is.na(repo) || !nzchar(repo) || repo == "@CRAN@") repo <- "https://cloud.r-project.org"
lib <- Sys.getenv("R_LIBS_SITE_TARGET", .libPaths()[1])

installed_version <- function(pkg) {
  tryCatch(as.character(packageVersion(pkg, lib.loc = .libPaths())), error = function(e) NA_character_)
}

fetch <- function(pkg, version, dir) {
  urls <- c(sprintf("%s/src/contrib/%s_%s.tar.gz", repo, pkg, version),
            sprintf("%s/src/contrib/Archive/%s/%s_%s.tar.gz", repo, pkg, pkg, version))
  dest <- file.path(dir, sprintf("%s_%s.tar.gz", pkg, version))
  for (url in urls) {
    ok <- tryCatch({
      suppressWarnings(utils::download.file(url, dest, quiet = TRUE, mode = "wb"))
      file.exists(dest) && file.info(dest)$size > 0
    }, error = function(e) FALSE)
    if (isTRUE(ok)) {
      message(sprintf("  fetched %s", url))
      return(dest)
    }
  }
  NULL
}

tmp <- tempfile("candle-mbo-cran-")
dir.create(tmp)
for (pkg in names(pins)) {
  have <- installed_version(pkg)
  if (!is.na(have) && have %in% pins[[pkg]]) {
    message(sprintf("%s %s: already installed", pkg, have))
    next
  }
  done <- FALSE
  for (version in pins[[pkg]]) {
    tarball <- fetch(pkg, version, tmp)
    if (is.null(tarball)) next
    if (version != pins[[pkg]][1] && !is.null(fallback_imports[[pkg]])) {
      need <- fallback_imports[[pkg]][is.na(sapply(fallback_imports[[pkg]], installed_version))]
      if (length(need)) utils::install.packages(need, repos = repo, lib = lib, quiet = TRUE)
    }
    message(sprintf("installing %s %s ...", pkg, version))
    utils::install.packages(tarball, repos = NULL, type = "source", lib = lib, quiet = TRUE)
    if (identical(installed_version(pkg), version)) {
      done <- TRUE
      break
    }
  }
  if (!done) {
    stop(sprintf("could not install %s (tried versions %s from %s, current and Archive)",
                 pkg, paste(pins[[pkg]], collapse = ", "), repo))
  }
}
unlink(tmp, recursive = TRUE)

suppressPackageStartupMessages({
  library(mlrMBO)
  library(DiceKriging)
  library(randomForest)
  library(rgenoud)
  library(lhs)
  library(jsonlite)
})
message(sprintf("R packages ready: mlrMBO %s, smoof %s, DiceKriging %s, mlr %s, ParamHelpers %s",
                packageVersion("mlrMBO"), packageVersion("smoof"), packageVersion("DiceKriging"),
                packageVersion("mlr"), packageVersion("ParamHelpers")))
