"""Packaging beyond pyproject.toml: put ``candle_mbo.pth`` into site-packages, for wheels and editable installs.

The .pth file registers ``candle_mbo.candle_finder`` when Python starts, so that ``import candle`` finds
candle_lib where it is installed and candle_mbo's own CANDLE layer elsewhere, without candle_mbo ever
installing a ``candle`` package of its own (which would overwrite candle_lib's).

A wheel gets the file at its root (beside the ``candle_mbo`` folder). An editable install (setuptools'
PEP 660 ``editable_wheel``) builds an "editable wheel" whose root is the install command's
``install_lib``; the file goes there. The name sorts after setuptools' ``__editable__.*.pth``, so in an
editable install candle_mbo is importable by the time this file is read.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "candle_mbo.pth"
# One line, run by site.py at startup. Never fails the interpreter: candle_mbo missing -> no-op.
PTH_LINE = ('import sys; exec("try:\\n from candle_mbo.candle_finder import register\\nexcept Exception:\\n'
            ' register = None\\nif register is not None:\\n register()")\n')


class build_py_with_pth(build_py):  # noqa: N801 - setuptools' naming
    """build_py that also writes candle_mbo.pth where the wheel's root is."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, PTH_NAME), "w", encoding="utf-8") as handle:
            handle.write(PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs


setup(cmdclass={"build_py": build_py_with_pth})
