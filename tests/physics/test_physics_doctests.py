"""The docstring examples of the physics and validation modules run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["fluorecon.validation", "fluorecon.physics.psf", "fluorecon.physics.sampling", "fluorecon.physics.camera",
           "fluorecon.physics.phantoms", "fluorecon.physics.forward", "fluorecon.physics.noise_model"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0
    assert res.failed == 0
