"""``candle.Benchmark`` and ``finalize_parameters``: candle_lib's parameter handling, reimplemented.

Precedence, lowest first: a definition's ``default`` < the defaults file < the command line < the run
context (what candle_mbo's runner injects: the run's hyperparameters and its output directory, the way
CANDLE Supervisor puts them on top of ``initialize_parameters()``).

Defaults-file values follow candle_lib's rules, so that a benchmark sees the same dict:

- every section is read, the first occurrence of a name wins, names are lower-cased (configparser);
- a value is a Python literal and keeps its type: ``'a:b c'`` stays a string even for an ``nargs='+'``
  parameter, ``[1, 2]`` stays a list, ``1`` stays an int for a float parameter;
- only where the definition has a ``default`` and the value is a string is the definition's ``type``
  applied to it (what argparse does to a string default), e.g. ``flag = 'true'`` -> True;
- an ``action='list-of-lists'`` value such as ``'1,2:3'`` becomes ``[[1, 2], [3]]``.

Unlike candle_lib, nothing in the file is ever executed: values are read with ``ast.literal_eval``.
Text that is not a literal (``epochs = ten``, ``activation = relu``), where candle_lib's ``eval`` fails,
is kept as text or converted with the definition's type. Two argparse accidents of candle_lib are not
reproduced: a file value of ``verbose``, ``profiling`` or ``logfile`` (flags with a short form and a
default) and of an ``action`` definition with a default are honoured here, candle_lib drops them.

``data_dir`` is ``$CANDLE_DATA_DIR/<model_name>/Data`` and ``output_dir`` is
``$CANDLE_OUTPUT_DIR|$CANDLE_DATA_DIR/<model_name>/<output_dir or Output>/<experiment_id>/<run_id>``, as
in candle_lib; with ``CANDLE_DATA_DIR`` unset (candle_lib refuses to run) the current directory stands
in (and ``data_dir`` is then not created). A run context's ``output_dir`` is used as given.
"""

import argparse
import ast
import configparser
import contextlib
import os
import re
import sys
import warnings

from ._common_params import ALWAYS_PRESENT, COMMON_DEFINITIONS
from ._helpers import str2bool

# What the runner injects for the run in progress (see run_context); None outside a run.
_run_context = None

# Parameters that must not both be True (candle_lib's CONFLICT_LIST).
CONFLICTING_FLAGS = (("clr_flag", "warmup_lr"), ("clr_flag", "reduce_lr"))


class ParameterError(ValueError):
    """A benchmark's parameters cannot be resolved: bad definition, defaults file, or value."""


@contextlib.contextmanager
def run_context(overrides, config_file=None):
    """Make ``finalize_parameters`` apply ``overrides`` last (and read ``config_file`` if given).

    Used by the runner, so that ``initialize_parameters()`` already sees the run's hyperparameters and
    output directory, and a parameter listed in ``required`` may be supplied by the search space.
    Once the benchmark is parsed, ``context["definitions"]`` holds by name the definition each run value
    is coerced with (see ``shaped_like``): the runner coerces its values again with them.
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


class ListOfListsAction(argparse.Action):
    """argparse action for ``action='list-of-lists'`` definitions (``--shape 1,2:3``)."""

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
    except (TypeError, ValueError):
        return False
    return True


def _number(token):
    number = float(token)
    return int(number) if number.is_integer() and "." not in token and "e" not in token.lower() else number


def is_list_definition(definition):
    """A parameter holding a list: ``nargs`` (``'+'``, ``'*'``, a count) or a list default."""
    return bool(definition) and ("nargs" in definition and definition["nargs"] not in (None, "?")
                                 or isinstance(definition.get("default"), (list, tuple)))


def coerce_value(definition, value, where=""):
    """Convert a run's ``value`` to what ``definition`` declares, as CANDLE Supervisor hands values over.

    For a list parameter (``nargs``, or a list default): a list keeps its items; ``"[64, 32]"`` is read as
    a list; other text is split on blanks and commas (``"64 32"``, ``"64,32"``); a single number
    becomes a one-element list. Items, and scalar values, are converted to the declared type: text
    with the type, an int to a float for a float parameter, a whole float (``2.0``) to an int for an
    int parameter (a fraction there is an error naming the parameter). Untyped items that read as
    numbers become numbers. None and values of untyped scalars are kept. ``where`` prefixes errors.
    """
    if definition is None or value is None:
        return value
    type_ = definition.get("type")
    name = definition.get("name", "?")
    try:
        if definition.get("action") in ("list-of-lists", ListOfListsAction):
            return parse_list_of_lists(value, type_) if isinstance(value, str) else value
        if is_list_definition(definition):
            return [_coerce_item(type_, item) for item in _as_items(value)]
        return _coerce_scalar(type_, value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ParameterError("%s%s = %r is not a valid %s value (%s)"
                             % (where, name, value, _type_name(type_) if type_ else "list", exc)) from None


def _as_items(value):
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed, is_literal = literal(text)
            if is_literal and isinstance(parsed, (list, tuple)):
                return list(parsed)
            text = text.strip("[]")
        return text.replace(",", " ").split()
    return [value]


def _coerce_item(type_, item):
    if type_ is None and isinstance(item, str) and _is_number_text(item):
        return _number(item)
    return _coerce_scalar(type_, item)


def _coerce_scalar(type_, value):
    if not callable(type_) or value is None or isinstance(value, (list, tuple, dict)):
        return value
    if isinstance(value, str):
        if type_ is str:
            return value
        if type_ is int:
            return _whole(value.strip())
        return type_(value.strip())
    if isinstance(value, bool):
        return value
    if type_ is int and isinstance(value, float):
        return _whole(value)
    if type_ is float and isinstance(value, int):
        return float(value)
    if type_ is str2bool and isinstance(value, int):
        return str2bool(value)
    return value


def _whole(value):
    """An int from an int, from '3', or from a whole number such as 2.0 or '2.0' (not from 2.5)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            value = float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("%r is not a whole number" % value)
        return int(value)
    return int(value)


def shaped_like(definition, value):
    """The definition a run value for this parameter is coerced with: the benchmark's own, except where the
    value the benchmark resolved (its default, the defaults file) has another shape.

    NT3 declares ``pool`` as one int (a common parameter) but its defaults file gives a list, which its
    code indexes: a run's ``pool: 4`` then becomes ``[4]``. P3B1 declares ``feature_names`` with
    ``nargs='+'`` but its file gives one string, which its code splits: a run's string stays a string.
    """
    if definition is None or definition.get("action") in ("list-of-lists", ListOfListsAction):
        return definition
    if isinstance(value, list) and not is_list_definition(definition):
        return dict(definition, nargs="+")
    if isinstance(value, str) and is_list_definition(definition):
        scalar = {k: v for k, v in definition.items() if k != "nargs"}
        if isinstance(scalar.get("default"), (list, tuple)):
            del scalar["default"]
        return scalar
    return definition


def implied_definition(name, current):
    """How to coerce a run value for a parameter no definition declares: like its current value."""
    if isinstance(current, list):
        return {"name": name, "default": current}
    if isinstance(current, bool):
        return {"name": name, "type": str2bool}
    if isinstance(current, (int, float)):
        return {"name": name, "type": type(current)}
    return None


def literal(text):
    """A defaults-file value: ``(python_value, True)`` for a literal, ``(text, False)`` otherwise.

    Never evaluates anything: ``ast.literal_eval`` only reads literals (numbers, strings, lists,
    tuples, dicts, sets, booleans, None).
    """
    text = text.strip()
    try:
        return ast.literal_eval(text), True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text, False


class DefaultsFile:
    """A defaults file as candle_lib reads it: ``values`` by (lower-case) name, with line numbers.

    ``texts`` holds the names whose value is not a Python literal (kept as the text itself).
    """

    def __init__(self, path):
        self.path = path
        self.values = {}
        self.texts = set()
        self.lines = {}
        parser = _read_ini(path)
        for section in parser.sections():
            for key, raw in parser.items(section):
                if key not in self.values:
                    self.values[key], is_literal = literal(raw)
                    if not is_literal:
                        self.texts.add(key)
        self._locate()

    def _locate(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    match = re.match(r"\s*([^=:\s\[#;][^=:]*?)\s*[=:]", line)
                    if match:
                        self.lines.setdefault(match.group(1).lower(), number)
        except OSError:
            pass

    def where(self, name):
        """``path:line: `` for error messages about ``name``."""
        line = self.lines.get(name)
        return "%s:%d: " % (self.path, line) if line else "%s: " % self.path


def _read_ini(path):
    parser = configparser.ConfigParser(interpolation=None)
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
    return parser


def read_defaults_file(path):
    """Read every section of an INI defaults file into one dict (first occurrence of a name wins)."""
    return DefaultsFile(path).values


def has_default(definition):
    return "default" in definition and definition["default"] is not argparse.SUPPRESS


def file_value(definition, value, is_text=False, where=""):
    """A defaults-file value as candle_lib hands it to the benchmark (see the module docstring)."""
    if definition is None:
        return value
    action = definition.get("action")
    type_ = definition.get("type")
    if action in ("list-of-lists", ListOfListsAction):
        return coerce_value(definition, value, where)
    if is_text:
        return coerce_value(definition, value, where)
    if has_default(definition) and isinstance(value, str) and callable(type_):
        try:
            return type_(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            if is_list_definition(definition):
                return coerce_value(definition, value, where)
            raise ParameterError("%s%s = %r is not a valid %s value (%s)"
                                 % (where, definition["name"], value, _type_name(type_), exc)) from None
    return value


def definition_value(definition):
    """A definition's default as argparse returns it: a string default goes through the type."""
    default = definition["default"]
    type_ = definition.get("type")
    if isinstance(default, str) and callable(type_) and definition.get("action") not in (
            "list-of-lists", ListOfListsAction):
        try:
            return type_(default)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ParameterError("parameter '%s' has default %r, which is not a valid %s value (%s)"
                                 % (definition["name"], default, _type_name(type_), exc)) from None
    return default


def check_definitions(definitions, where):
    """Refuse definitions candle_lib would refuse or misread, naming the faulty entry.

    Definitions without a ``type`` are accepted, as candle_lib accepts them (values stay as given).
    """
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


def _add_argument(parser, definition, default):
    flags = []
    if definition.get("abv"):
        flags.append("-" + definition["abv"])
    flags.append("--" + definition["name"])
    kwargs = {"dest": definition["name"], "default": default}
    help_text = definition.get("help", "") or ""
    if has_default(definition) and definition["default"] is not None:
        help_text = "%s (default: %s)" % (help_text, definition["default"])
    kwargs["help"] = help_text.replace("%", "%%")
    action = definition.get("action")
    if action in ("list-of-lists", ListOfListsAction):
        kwargs["action"] = ListOfListsAction
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


def build_parser(definitions, prog=None, description=None, parser=None):
    """An argparse parser for the definitions; every default is SUPPRESS so only given flags appear."""
    if parser is None:
        parser = argparse.ArgumentParser(prog=prog, description=description, conflict_handler="resolve")
    else:
        parser.conflict_handler = "resolve"
    for definition in definitions.values():
        _add_argument(parser, definition, argparse.SUPPRESS)
    return parser


def parse_from_dictlist(dictlist, parser):
    """Add the definitions in ``dictlist`` to the argparse ``parser`` and return it (candle_lib's API).

    Each option gets its definition's default (none: the option is absent unless given), type, short
    form (``abv``), ``nargs`` and ``choices``; ``action='list-of-lists'`` reads ``1,2:3``.
    """
    check_definitions(dictlist, getattr(parser, "prog", None) or "parse_from_dictlist")
    parser.conflict_handler = "resolve"
    for definition in dictlist:
        _add_argument(parser, definition, definition.get("default", argparse.SUPPRESS))
    return parser


def check_flag_conflicts(params):
    """Raise ParameterError when two parameters that exclude each other are both True (candle_lib's list:
    ``clr_flag`` with ``warmup_lr`` or with ``reduce_lr``)."""
    for pair in CONFLICTING_FLAGS:
        if all(params.get(name) is True for name in pair):
            raise ParameterError("parameters %s cannot both be True" % " and ".join(sorted(pair)))


class Benchmark:
    """CANDLE's benchmark description: where the defaults file is, and which parameters exist.

    Subclasses usually override ``set_locals()`` to set ``self.required`` and
    ``self.additional_definitions``; it is called last in ``__init__``, as in candle_lib.
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
        if parser is None:  # built here, as candle_lib does: code may add options to it before parsing
            parser = argparse.ArgumentParser(prog=prog, description=desc, conflict_handler="resolve",
                                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        self.parser = parser
        self.required = set(required) if required is not None else set()
        self.additional_definitions = list(additional_definitions) if additional_definitions else []
        self.registered_conf = list(COMMON_DEFINITIONS)
        self.conffile = os.path.join(filepath, defmodel) if defmodel else None
        if self.conffile and not os.path.isfile(self.conffile) and not _config_overridden():
            raise ParameterError("defaults file not found: %s" % self.conffile)
        self.model_name = None
        if self.conffile and os.path.isfile(self.conffile):
            with contextlib.suppress(ParameterError, OSError):
                self.model_name = self.get_parameter_from_file(self.conffile, "model_name")
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
        """Read a defaults file into a dict of values as candle_lib gives them (see the module docstring)."""
        definitions = self.definitions()
        defaults = DefaultsFile(path)
        return {key: file_value(definitions.get(key), value, key in defaults.texts, defaults.where(key))
                for key, value in defaults.values.items()}

    def get_parameter_from_file(self, absfname, param):
        """The value of ``param`` in a defaults file, as read there (ParameterError if it is absent)."""
        values = read_defaults_file(absfname)
        if param.lower() not in values:
            raise ParameterError("parameter %s is not set in %s" % (param, absfname))
        return values[param.lower()]

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
    """Where ``--config_file NAME`` points: absolute as given; ``./NAME`` beside the benchmark first (as in
    candle_lib); otherwise ``$CANDLE_DATA_DIR``, the current directory, then beside the benchmark."""
    if os.path.isabs(name):
        candidates = [name]
    else:
        beside = os.path.join(bmk.file_path, name)
        data = os.environ.get("CANDLE_DATA_DIR")
        in_data = [os.path.join(data, name)] if data else []
        if name.startswith("./"):
            candidates = [beside, name] + in_data
        else:
            candidates = in_data + [name, beside]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ParameterError("config_file %s not found (looked at %s)" % (name, ", ".join(candidates)))


def finalize_parameters(bmk):
    """Resolve every parameter of ``bmk`` and return them as a dict (see the module docstring)."""
    definitions = bmk.definitions()
    if _run_context is not None:
        _run_context["definitions"] = definitions
    bmk.parser = build_parser(definitions, bmk.prog, bmk.desc, bmk.parser)
    argv = sys.argv[1:]
    cli = vars(bmk.parser.parse_args(argv)) if argv else {}
    context = _run_context or {"overrides": {}, "config_file": None}
    overrides = context["overrides"]

    conffile = bmk.conffile
    chosen = overrides.get("config_file") or context["config_file"] or cli.get("config_file")
    if chosen:
        conffile = _resolve_config_file(str(chosen), bmk)
    file_values = bmk.read_config_file(conffile) if conffile else {}
    if _run_context is not None and conffile:
        _run_context["config_file_read"] = os.path.abspath(conffile)  # pinned by the experiment (probe)
    unknown = sorted(set(file_values) - set(definitions))
    if unknown:
        warnings.warn("%s: parameter%s not defined by the benchmark (kept as given): %s"
                      % (conffile, "s" if len(unknown) > 1 else "", ", ".join(unknown)), RuntimeWarning,
                      stacklevel=2)

    params = {name: definition_value(d) for name, d in definitions.items() if has_default(d)}
    params.update(file_values)
    params.update(cli)
    coercion = {name: shaped_like(d, params.get(name)) for name, d in definitions.items()}
    if _run_context is not None:
        _run_context["definitions"] = coercion
    for name, value in overrides.items():
        definition = coercion.get(name) or implied_definition(name, params.get(name))
        params[name] = coerce_value(definition, value, "run parameter ")
    for name, value in ALWAYS_PRESENT.items():
        params.setdefault(name, value)
    params["data_type"] = _dtype(params["data_type"])
    bmk.model_name = params.get("model_name") or bmk.model_name
    _fill_directories(params, bmk, overrides)
    bmk.check_required_exists(params)
    check_flag_conflicts(params)
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


def data_root():
    """The folder that holds every benchmark's data: ``$CANDLE_DATA_DIR``, else the current directory."""
    return os.path.abspath(os.environ.get("CANDLE_DATA_DIR") or os.getcwd())


def _fill_directories(params, bmk, overrides):
    model = str(params.get("model_name") or bmk.prog or type(bmk).__name__)
    if "data_dir" not in overrides:
        params["data_dir"] = os.path.join(data_root(), model, "Data")
    if "output_dir" in overrides and overrides["output_dir"]:
        params["output_dir"] = os.path.abspath(str(params["output_dir"]))
    else:
        base = os.environ.get("CANDLE_OUTPUT_DIR") or data_root()
        params["output_dir"] = os.path.abspath(os.path.join(
            base, model, str(params.get("output_dir") or "Output"), str(params["experiment_id"]),
            str(params["run_id"])))
    os.makedirs(params["output_dir"], exist_ok=True)
    if os.environ.get("CANDLE_DATA_DIR") and isinstance(params["data_dir"], str):
        # created under CANDLE_DATA_DIR, as candle_lib does; not in whatever folder a script runs from
        os.makedirs(params["data_dir"], exist_ok=True)


def create_params(file_path=None, default_model=None, framework=None, prog_name=None, desc=None,
                  additional_definitions=None, required=None):
    """Build a Benchmark from these arguments and return its finalized parameters (candle_lib's API)."""
    bmk = Benchmark(file_path, default_model, framework, prog_name, desc,
                    additional_definitions=additional_definitions, required=required)
    return finalize_parameters(bmk)


initialize_parameters = finalize_parameters
