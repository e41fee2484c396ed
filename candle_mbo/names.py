"""Parameter names checked against the benchmark's definitions (stand-in until the bridge work lands)."""

import logging

log = logging.getLogger("candle_mbo")


def check_parameter_names(names, description, source, allow_unknown=False):
    """Warn about parameter names the benchmark defines nowhere."""
    known = set(description["definitions"]) | set(description["params"])
    unknown = sorted(set(names) - known)
    if unknown:
        log.warning("warning: %s sets parameter%s the benchmark does not define: %s", source,
                    "s" if len(unknown) > 1 else "", ", ".join(unknown))
    return unknown
