"""CLI helpers: warnings are shown once and foreign warnings pass through without looping."""

from __future__ import annotations

import threading
import warnings

from fluorecon.cli.common import echo_warnings
from fluorecon.errors import FluoreconWarning


def test_echo_warnings_reissues_foreign_warnings_once_and_terminates(capsys):
    done = threading.Event()
    seen: list[str] = []

    def body():
        with warnings.catch_warnings(record=True) as outer:
            warnings.simplefilter("always")
            with echo_warnings():
                warnings.warn("from a library", DeprecationWarning, stacklevel=1)
                warnings.warn("adjusted", FluoreconWarning, stacklevel=1)
                warnings.warn("adjusted", FluoreconWarning, stacklevel=1)
            seen.extend(str(w.message) for w in outer)
        done.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(10)
    assert done.is_set(), "echo_warnings did not terminate (re-issued warnings fed its own list)"
    assert seen == ["from a library"]
    assert capsys.readouterr().err.count("warning: adjusted") == 1
