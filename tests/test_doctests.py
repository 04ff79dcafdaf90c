"""Every docstring example of the package runs and gives what it shows.

Modules are discovered (nothing to register): a module whose examples break, or that cannot be
imported, fails here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fluorecon

MODULES = sorted(m.name for m in pkgutil.walk_packages(fluorecon.__path__, "fluorecon.")
                 if not m.name.startswith("fluorecon.napari"))


def test_discovery_finds_the_package():
    assert len(MODULES) > 40 and "fluorecon.tasks.contract" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    res = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples of {name} failed (see the output above)"
