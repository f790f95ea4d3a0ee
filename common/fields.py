"""Input types of the public contract: integers are JSON integers within signed 64 bits."""

from typing import Annotated

from pydantic import Field, StrictInt

INT64_MAX = 2**63 - 1

Id = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
Money = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
Balance = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
IdempotencyKeyValue = Annotated[str, Field(min_length=1, max_length=200)]
