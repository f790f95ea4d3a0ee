"""A test kit for saga authors. `ModelParticipants`: every participant of a saga in memory,
keeping the participant kit's promises and counting each action's net effect."""

from sagaengine.testing._participants import (
    ActionLedger,
    AppliesLateActions,
    Arrival,
    Effect,
    ModelParticipants,
    Point,
    UndoesEveryTime,
)

__all__ = [
    "ActionLedger",
    "AppliesLateActions",
    "Arrival",
    "Effect",
    "ModelParticipants",
    "Point",
    "UndoesEveryTime",
]
