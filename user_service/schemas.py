from pydantic import BaseModel, Field

from common.fields import Balance, Money, Text
from sagaengine.participant.fields import IdempotencyKeyValue


class CreateUser(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    balance: Balance


class Charge(BaseModel):
    amount: Money


class Deduction(BaseModel):
    amount: Money


class ChargeBack(BaseModel):
    amount: Money
    deduction_key: IdempotencyKeyValue


class UserOut(BaseModel):
    id: int
    name: str
    balance: int
