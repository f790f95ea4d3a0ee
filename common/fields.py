"""Input types of the public contract: integers are JSON integers within signed 64 bits, and
text is text PostgreSQL can store."""

from typing import Annotated

from pydantic import AfterValidator, Field, StrictInt

INT64_MAX = 2**63 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_storable)]

Id = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
Money = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
Balance = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
IdempotencyKeyValue = Annotated[Text, Field(min_length=1, max_length=200)]
