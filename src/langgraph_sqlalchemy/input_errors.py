"""Bad-input exceptions that are also the exception types upstream raises for the same input.

Code written against ``langgraph-checkpoint-postgres`` catches what upstream raises: a
``TypeError`` for a value that is not a dict, a ``KeyError`` for a config without
``thread_id``, a ``UnicodeEncodeError`` for an id holding a lone surrogate. Ours raise
:class:`~langgraph_sqlalchemy.errors.InvalidInputError` (a ``ValueError``) with a message that
names the cause, and each class below is *also* the builtin type upstream raises, so both
``except InvalidInputError`` and the user's existing ``except TypeError`` keep working.

Lone surrogates (``"\\ud800"``) are ``str`` values Python can hold but UTF-8 cannot encode:
upstream's psycopg fails with ``UnicodeEncodeError`` and asyncpg with a driver error deep in the
call (SQLSTATE 22000). They are refused here, before anything is sent.
"""

from __future__ import annotations

from .errors import InvalidInputError

__all__ = [
    "InvalidInputTypeError",
    "MissingKeyError",
    "UnencodableTextError",
    "check_encodable",
    "lone_surrogate_at",
]


class InvalidInputTypeError(InvalidInputError, TypeError):
    """An argument of a type the call cannot use (upstream raises ``TypeError`` for it)."""


class MissingKeyError(InvalidInputError, KeyError):
    """A required key is missing from a config dict (upstream raises ``KeyError`` for it)."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; the message reads better plain.
        return str(self.args[0]) if self.args else ""


class UnencodableTextError(InvalidInputError, UnicodeEncodeError):
    """A string with a lone surrogate, which UTF-8 (and so PostgreSQL) cannot hold.

    Also a ``UnicodeEncodeError`` (``encoding``, ``object``, ``start``, ``end``, ``reason`` are
    set as the codec would set them), which is what upstream's driver raises for such text.
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        UnicodeEncodeError.__init__(
            self, "utf-8", text, position, position + 1, "surrogates not allowed"
        )
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[UnencodableTextError], tuple[str, str, int]]:
        return (type(self), (self.message, self.object, self.start))


def lone_surrogate_at(text: str) -> int | None:
    """The position of the first lone surrogate in ``text``, or None when UTF-8 can encode it."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_encodable(
    text: str, what: str, *, error: type[UnencodableTextError] = UnencodableTextError
) -> None:
    """Raise ``error`` (an :class:`UnencodableTextError`) when ``text`` holds a lone
    surrogate; ``what`` names the text in the message ("key 'k'", "the string at a.b")."""
    position = lone_surrogate_at(text)
    if position is not None:
        raise error(
            f"{what} contains a lone surrogate ({text[position]!r} at position {position}), "
            "which is not valid UTF-8 and cannot be stored in PostgreSQL",
            text,
            position,
        )
