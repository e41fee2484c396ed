"""``candle.Benchmark`` and ``finalize_parameters``: CANDLE's parameter handling, reimplemented.

Precedence, lowest first: a definition's ``default`` < the defaults file < the command line < the run
context (what candle_mbo's runner injects: the run's hyperparameters and its output directory, the way
CANDLE Supervisor passes them on the command line).

Unlike candle_lib, defaults-file values are read with ``ast.literal_eval``; nothing in the file is ever
executed. A value that is not a Python literal stays a string.
"""

import argparse
import ast
import configparser
import contextlib
import os
import sys
import warnings

from ._common_params import ALWAYS_PRESENT, COMMON_DEFINITIONS, COMMON_NAMES
from ._helpers import str2bool

_DEFINITION_KEYS = {"name", "type", "abv", "default", "help", "choices", "nargs", "action"}

# What the runner injects for the run in progress (see run_context); None outside a run.
_run_context = None


class ParameterError(ValueError):
    """A benchmark's parameters cannot be resolved: bad definition, defaults file, or value."""


@contextlib.contextmanager
def run_context(overrides, config_file=None):
    """Make ``finalize_parameters`` apply ``overrides`` last (and read ``config_file`` if given).

    Used by the runner, so that ``initialize_parameters()`` already sees the run's hyperparameters and
    output directory, and a parameter listed in ``required`` may be supplied by the search space.
    """
    global _run_context
    previous = _run_context
    _run_context = {"overrides": dict(overrides), "config_file": config_file, "definitions": None}
    try:
        yield _run_context
    finally:
        _run_context = previous


def parse_list_of_lists(text, element_type=int):
    """'1,2:3,4' -> [[1, 2], [3, 4]] (CANDLE's list-of-lists notation; brackets are ignored)."""
    element_type = element_type or int
    cleaned = str(text).replace("[", "").replace("]", "")
    return [[element_type(item.strip()) for item in group.split(",") if item.strip()]
            for group in cleaned.split(":")]


class _ListOfListsAction(argparse.Action):
    def __init__(self, option_strings, dest, type=None, **kwargs):  # noqa: A002 - argparse's name
        super().__init__(option_strings, dest, **kwargs)
        self.element_type = type or int

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, parse_list_of_lists(values, self.element_type))
        except ValueError as exc:
            parser.error("%s: cannot read %r as a list of lists like 1,2:3,4 (%s)" % (option_string, values, exc))


def _type_name(type_):
    if type_ is str2bool:
        return "boolean"
    return getattr(type_, "__name__", str(type_))


def _is_number_text(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


def coerce_value(definition, value, where=""):
    """Convert ``value`` to what ``definition`` declares, as CANDLE Supervisor does for its runs.

    A string for a list parameter (``nargs``, a list default, or list-of-lists) becomes a list of the
    declared type ("2 3" -> [2, 3]); a string for a typed scalar is converted with the type; an int for
    a float parameter becomes a float. Other values are kept. ``where`` prefixes error messages.
    """
    if definition is None:
        return value
    type_ = definition.get("type")
    name = definition["name"]
    try:
        if definition.get("action") == "list-of-lists":
            return parse_list_of_lists(value, type_) if isinstance(value, str) else value
        is_list = "nargs" in definition or isinstance(definition.get("default"), list)
        if is_list and isinstance(value, str):
            tokens = value.replace(",", " ").split()
            if "nargs" in definition or (tokens and all(_is_number_text(t) for t in tokens)):
                element = type_ if callable(type_) else None
                if element is None and tokens and all(_is_number_text(t) for t in tokens):
                    element = _number
                return [element(t) if element else t for t in tokens]
            return value
        if isinstance(value, str) and callable(type_) and type_ is not str:
            return type_(value.strip())
        if type_ is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if type_ is str2bool and isinstance(value, int) and not isinstance(value, bool):
            return str2bool(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ParameterError("%s%s = %r is not a valid %s value (%s)"
                             % (where, name, value, _type_name(type_), exc)) from None
    return value


def _number(token):
    number = float(token)
    return int(number) if number.is_integer() and "." not in token and "e" not in token.lower() else number


def literal(text):
    """A defaults-file value: a Python literal if it is one, else the text itself (never evaluated)."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def read_defaults_file(path):
    """Read every section of an INI defaults file into one dict (first occurrence of a key wins)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the case of parameter names
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=path)
    except FileNotFoundError:
        raise ParameterError("defaults file not found: %s" % path) from None
    except IsADirectoryError:
        raise ParameterError("defaults file is a directory: %s" % path) from None
    except UnicodeDecodeError as exc:
        raise ParameterError("defaults file %s is not UTF-8 text (%s)" % (path, exc)) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ParameterError("%s:%d: no section header before %r; start the file with [Global_Params]"
                             % (path, exc.lineno, exc.line.strip())) from None
    except configparser.DuplicateOptionError as exc:
        raise ParameterError("%s:%d: %s is set twice in [%s]" % (path, exc.lineno, exc.option, exc.section)) from None
    except configparser.DuplicateSectionError as exc:
        raise ParameterError("%s:%d: section [%s] appears twice" % (path, exc.lineno, exc.section)) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ParameterError("%s:%d: cannot read %s; expected name = value" % (path, lineno, line.strip())) from None
    except configparser.Error as exc:
        raise ParameterError("defaults file %s is not valid INI: %s" % (path, exc)) from None
    values = {}
    for section in parser.sections():
        for key, raw in parser.items(section):
            if key not in values:
                values[key] = literal(raw)
    return values


def check_definitions(definitions, where):
    """Refuse definitions CANDLE would refuse or misread, naming the faulty entry."""
    for index, definition in enumerate(definitions):
        if not isinstance(definition, dict):
            raise ParameterError("%s: parameter definition #%d is %r, not a dict" % (where, index + 1, definition))
        name = definition.get("name")
        if not name or not isinstance(name, str):
            raise ParameterError("%s: parameter definition #%d has no 'name'" % (where, index + 1))
        action = definition.get("action")
        if action in ("store_true", "store_false"):
            raise ParameterError(
                "%s: parameter '%s' uses action=%r, which a defaults file cannot undo; "
                "use 'type': candle.str2bool instead" % (where, name, action))
        if "type" not in definition and "choices" not in definition and action is None:
            raise ParameterError("%s: parameter '%s' has no 'type' (e.g. int, float, str, candle.str2bool)"
                                 % (where, name))
        type_ = definition.get("type")
        if type_ is bool:
            raise ParameterError("%s: parameter '%s' has type=bool, which reads every non-empty string as "
                                 "True; use 'type': candle.str2bool" % (where, name))
        if type_ is not None and not callable(type_):
            raise ParameterError("%s: parameter '%s' has type %r, which is not callable" % (where, name, type_))


def merged_definitions(additional):
    """Common definitions with the benchmark's own on top (same name: the benchmark's wins)."""
    by_name = {d["name"]: d for d in COMMON_DEFINITIONS}
    for definition in additional:
        by_name[definition["name"]] = definition
    return by_name


def build_parser(definitions, prog=None, description=None, parser=None):
    """An argparse parser for the definitions; every default is SUPPRESS so only given flags appear."""
    if parser is None:
        parser = argparse.ArgumentParser(prog=prog, description=description, conflict_handler="resolve")
    else:
        parser.conflict_handler = "resolve"
    for definition in definitions.values():
        flags = []
        if definition.get("abv"):
            flags.append("-" + definition["abv"])
        flags.append("--" + definition["name"])
        kwargs = {"dest": definition["name"], "default": argparse.SUPPRESS}
        help_text = definition.get("help", "")
        if definition.get("default") not in (None, argparse.SUPPRESS):
            help_text = "%s (default: %s)" % (help_text, definition["default"])
        kwargs["help"] = help_text.replace("%", "%%")
        action = definition.get("action")
        if action == "list-of-lists":
            kwargs["action"] = _ListOfListsAction
            kwargs["type"] = definition.get("type") or int
        else:
            if action is not None:
                kwargs["action"] = action
            if definition.get("type") is not None:
                kwargs["type"] = definition["type"]
            if "nargs" in definition:
                kwargs["nargs"] = definition["nargs"]
            if "choices" in definition:
                kwargs["choices"] = definition["choices"]
        parser.add_argument(*flags, **kwargs)
    return parser


class Benchmark:
    """CANDLE's benchmark description: where the defaults file is, and which parameters exist.

    Subclasses usually override ``set_locals()`` to set ``self.required`` and
    ``self.additional_definitions``; it is called last in ``__init__``, as in CANDLE.
    """

    def __init__(self, filepath, defmodel, framework, prog=None, desc=None, parser=None,
                 additional_definitions=None, required=None):
        filepath = os.fspath(filepath) if filepath is not None else os.getcwd()
        if os.path.isfile(filepath):
            filepath = os.path.dirname(filepath)
        self.file_path = filepath
        self.default_model = defmodel
        self.framework = framework
        self.prog = prog
        self.desc = desc
        self.parser = parser
        self.required = set(required) if required is not None else set()
        self.additional_definitions = list(additional_definitions) if additional_definitions else []
        self.registered_conf = COMMON_DEFINITIONS
        self.conffile = os.path.join(filepath, defmodel) if defmodel else None
        if self.conffile and not os.path.isfile(self.conffile) and not _config_overridden():
            raise ParameterError("defaults file not found: %s" % self.conffile)
        self.model_name = None
        self.set_locals()

    def set_locals(self):
        """Legacy hook: set ``self.required`` and ``self.additional_definitions`` here."""

    # The methods below keep candle_lib's names so that code calling them keeps working.
    def parse_parameters(self):
        """Build ``self.parser`` from the common and additional definitions."""
        definitions = self.definitions()
        self.parser = build_parser(definitions, self.prog, self.desc, self.parser)
        return self.parser

    def definitions(self):
        """All parameter definitions of this benchmark, by name, after validating them."""
        where = self.prog or type(self).__name__
        check_definitions(self.additional_definitions, where)
        return merged_definitions(self.additional_definitions)

    def read_config_file(self, path):
        """Read a defaults file into a dict of Python values (coerced to the declared types)."""
        definitions = self.definitions()
        values = read_defaults_file(path)
        return {key: coerce_value(definitions.get(key), value, "%s: " % path) for key, value in values.items()}

    def check_required_exists(self, params):
        """Raise a ParameterError naming every required parameter that has no value."""
        missing = sorted(set(self.required) - set(params))
        if missing:
            raise ParameterError("required parameter%s not set: %s (set %s in the defaults file %s or on "
                                 "the command line)" % ("s" if len(missing) > 1 else "", ", ".join(missing),
                                                        "them" if len(missing) > 1 else "it",
                                                        self.conffile or "(none)"))


def _config_overridden():
    if _run_context and (_run_context.get("config_file") or "config_file" in _run_context["overrides"]):
        return True
    return any(arg == "--config_file" or arg.startswith("--config_file=") for arg in sys.argv[1:])


def _resolve_config_file(name, bmk):
    if os.path.isabs(name) or os.path.exists(name):
        return name
    beside = os.path.join(bmk.file_path, name)
    if os.path.exists(beside):
        return beside
    data = os.environ.get("CANDLE_DATA_DIR")
    if data and os.path.exists(os.path.join(data, name)):
        return os.path.join(data, name)
    raise ParameterError("config_file %s not found (looked in %s and %s)" % (name, os.getcwd(), bmk.file_path))


def finalize_parameters(bmk):
    """Resolve every parameter of ``bmk`` and return them as a dict (see the module docstring)."""
    definitions = bmk.definitions()
    if _run_context is not None:
        _run_context["definitions"] = definitions
    argv = sys.argv[1:]
    cli = {}
    if argv:
        bmk.parser = build_parser(definitions, bmk.prog, bmk.desc, bmk.parser)
        cli = vars(bmk.parser.parse_args(argv))
    context = _run_context or {"overrides": {}, "config_file": None}

    conffile = bmk.conffile
    chosen = context["overrides"].get("config_file") or context["config_file"] or cli.get("config_file")
    if chosen:
        conffile = _resolve_config_file(str(chosen), bmk)
    file_values = bmk.read_config_file(conffile) if conffile else {}
    unknown = sorted(set(file_values) - set(definitions))
    if unknown:
        warnings.warn("%s: parameter%s not defined by the benchmark (kept as given): %s"
                      % (conffile, "s" if len(unknown) > 1 else "", ", ".join(unknown)), RuntimeWarning,
                      stacklevel=2)

    params = {}
    for name, definition in definitions.items():
        default = definition.get("default", argparse.SUPPRESS)
        if default is not argparse.SUPPRESS and "default" in definition:
            params[name] = default
    params.update(file_values)
    params.update(cli)
    for name, value in context["overrides"].items():
        params[name] = coerce_value(definitions.get(name), value, "run parameter ")
    for name, value in ALWAYS_PRESENT.items():
        params.setdefault(name, value)
    params["data_type"] = _dtype(params["data_type"])
    bmk.model_name = params.get("model_name") or bmk.model_name
    _fill_directories(params, bmk)
    bmk.check_required_exists(params)
    return params


def _dtype(value):
    """'f16'/'f32'/'f64' -> the numpy type, as CANDLE hands it to models; anything else is kept."""
    names = {"f16": "float16", "f32": "float32", "f64": "float64"}
    if isinstance(value, str) and value in names:
        try:
            import numpy
        except ImportError:
            return value
        return getattr(numpy, names[value])
    return value


def _fill_directories(params, bmk):
    base = os.environ.get("CANDLE_DATA_DIR") or os.getcwd()
    model = params.get("model_name") or bmk.prog or type(bmk).__name__
    params.setdefault("data_dir", os.path.join(base, str(model), "Data"))
    if not params.get("output_dir"):
        params["output_dir"] = os.path.join(base, str(model), "Output", str(params["experiment_id"]),
                                            str(params["run_id"]))
    os.makedirs(params["output_dir"], exist_ok=True)


initialize_parameters = finalize_parameters
