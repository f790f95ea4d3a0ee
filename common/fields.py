"""Input types of the public contract: integers are JSON integers within signed 64 bits, and
text is text PostgreSQL can store (the participant kit's check, the one its keys pass)."""

import re
from typing import Annotated

from fastapi import Path
from pydantic import BeforeValidator, Field, StrictInt

from sagaengine.participant.fields import StorableText

INT64_MAX = 2**63 - 1

Text = StorableText

_DIGITS = re.compile(r"[0-9]+")


def _digits_only(value: object) -> object:
    # A path segment is text, and pydantic's lax mode would take "2.0" or " 2" as 2: an id in a
    # path is written as the JSON integer it is, digits only.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in decimal digits")
    return value


Id = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
Money = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
Balance = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
# An id in a URL path (`/orders/{order_id}`): digits only, 1 to 2**63 - 1.
PathId = Annotated[int, Path(ge=1, le=INT64_MAX), BeforeValidator(_digits_only)]
