"""``import candle`` without shadowing candle_lib: candle_lib where it is installed, candle_mbo's layer elsewhere.

CANDLE benchmarks do ``import candle``. candle_lib (ECP-CANDLE/candle_lib) installs a top-level ``candle``
package; candle_mbo does not install one, so it can never overwrite it. Instead, :func:`register` puts a
small finder on ``sys.meta_path`` that answers ``import candle`` with :mod:`candle_mbo.candle_api` only
when no other finder can provide a real ``candle`` module or package. A ``candle/`` folder without
``__init__.py`` (a namespace package, e.g. a stray ``__pycache__`` left behind) does not count as one.

Installing candle_mbo (a wheel or an editable install) puts ``candle_mbo.pth`` into site-packages, which
calls :func:`register` when Python starts, so standalone scripts get ``candle`` too. Importing
:mod:`candle_mbo.candle_api` also calls it (the runner subprocess, runs with only ``PYTHONPATH``).

This module must stay tiny and import nothing heavy: the ``.pth`` file imports it in every interpreter.
"""

import sys

ALIAS = "candle"
TARGET = "candle_mbo.candle_api"


class CandleFinder:
    """A meta path finder for ``candle`` and ``candle.<sub>``, deferring to every other finder.

    It sits first on ``sys.meta_path`` but returns ``None`` for ``candle`` whenever another finder
    resolves it to a real module, which then loads as usual. Placing it first (instead of last) lets
    it also win over a namespace package named ``candle``, which would otherwise be an empty module.
    """

    candle_mbo_finder = True  # recognised across copies of this module (an installed one and a checkout)

    def find_spec(self, fullname, path=None, target=None):
        if fullname == ALIAS:
            if _provided_elsewhere(fullname, path, self):
                return None
            return _alias_spec(fullname, TARGET, is_package=True)
        if fullname.startswith(ALIAS + "."):
            parent = sys.modules.get(ALIAS)
            if getattr(parent, "__name__", None) != TARGET:
                return None  # candle is candle_lib (or something else): not ours to answer
            real = TARGET + fullname[len(ALIAS):]
            import importlib.util

            try:
                real_spec = importlib.util.find_spec(real)
            except (ImportError, ValueError):
                return None
            if real_spec is None:
                return None
            return _alias_spec(fullname, real, is_package=real_spec.submodule_search_locations is not None)
        return None

    def invalidate_caches(self):
        pass


class _AliasLoader:
    """Loads ``candle[.x]`` as the already importable ``candle_mbo.candle_api[.x]`` (one module object)."""

    def __init__(self, target):
        self.target = target
        self._real_spec = None

    def create_module(self, spec):
        import importlib

        module = importlib.import_module(self.target)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import system set module.__spec__ to the alias' spec; give the module back its own
        # identity so that reload() and tools reading __spec__ see candle_mbo.candle_api.
        if self._real_spec is not None:
            module.__spec__ = self._real_spec


def _alias_spec(name, target, is_package):
    from importlib.machinery import ModuleSpec

    return ModuleSpec(name, _AliasLoader(target), is_package=is_package)


def _provided_elsewhere(name, path, own):
    """Whether another finder on sys.meta_path resolves ``name`` to a real (non-namespace) module."""
    for finder in list(sys.meta_path):
        if finder is own or getattr(finder, "candle_mbo_finder", False):
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, path)
        except Exception:  # noqa: BLE001 - a broken third-party finder must not break `import candle`
            continue
        if spec is None:
            continue
        if spec.origin is None and spec.submodule_search_locations is not None:
            continue  # a namespace package: a folder named candle, not an installed distribution
        return True
    return False


def register():
    """Make ``import candle`` resolve as described in the module docstring (idempotent).

    Returns the finder. Safe to call in any process, any number of times.
    """
    for finder in sys.meta_path:
        if getattr(finder, "candle_mbo_finder", False):
            return finder
    finder = CandleFinder()
    sys.meta_path.insert(0, finder)
    return finder


def unregister():
    """Remove the finder again (for tests); ``candle`` already imported stays in sys.modules."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "candle_mbo_finder", False)]


def candle_installed():
    """True when another distribution (candle_lib) provides ``candle``; checked without importing it."""
    return _provided_elsewhere(ALIAS, None, None)
