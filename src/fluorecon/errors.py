"""Errors and warnings raised by fluorecon.

Every user-facing problem is a :class:`FluoreconError` carrying a message that names what is wrong
and a ``hint`` that says how to fix it. The CLI prints both and exits non-zero without a traceback.
"""

from __future__ import annotations


class FluoreconError(ValueError):
    """A problem with the user's input or parameters.

    Parameters
    ----------
    message : str
        What is wrong, naming the offending input.
    hint : str, optional
        How to fix it.

    Examples
    --------
    >>> err = FluoreconError("PSF sums to 0", hint="pass a PSF with positive values")
    >>> str(err)
    'PSF sums to 0. Fix: pass a PSF with positive values'
    """

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}. Fix: {hint}")


class FluoreconWarning(UserWarning):
    """Something was adjusted automatically (e.g. a PSF cropped to the image) or looks suspicious."""


def validation_message(error: Exception) -> str:
    """One line naming each invalid field of a pydantic ``ValidationError`` (``field: message; ...``).

    Examples
    --------
    >>> from pydantic import BaseModel, ValidationError
    >>> class P(BaseModel):
    ...     gain: float
    >>> try:
    ...     P(gain="x")
    ... except ValidationError as e:
    ...     print(validation_message(e))
    gain: Input should be a valid number, unable to parse string as a number
    """
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors())
