"""A key as a participant receives it: text PostgreSQL can store, 1 to `MAX_KEY_LENGTH`
characters (pydantic types, for a request body or a header)."""

from typing import Annotated

from pydantic import AfterValidator, Field

from sagaengine.participant.store import MAX_KEY_LENGTH


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# Text PostgreSQL can store: no NUL character, no lone surrogate.
StorableText = Annotated[str, AfterValidator(_storable)]
# An idempotency key in a request body, e.g. the key of the action a compensation undoes.
IdempotencyKeyValue = Annotated[StorableText, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
