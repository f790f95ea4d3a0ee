"""The saga definitions an application runs, by (name, version).

A saga records the name and version it started on and finishes on that version: a deploy that
changes a definition registers the new version as current and keeps the old one (`retired`)
until no saga runs on it.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from sagaengine.definition import Participant, SagaDefinition


class Registry(Mapping[tuple[str, int], SagaDefinition[Any]]):
    def __init__(
        self, *current: SagaDefinition[Any], retired: tuple[SagaDefinition[Any], ...] = ()
    ):
        self.current: dict[str, SagaDefinition[Any]] = {}
        for definition in current:
            if definition.name in self.current:
                raise ValueError(f"two current definitions of saga {definition.name}")
            self.current[definition.name] = definition
        self._all = {d.key: d for d in (*retired, *current)}

    def __getitem__(self, key: tuple[str, int]) -> SagaDefinition[Any]:
        return self._all[key]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def participants(self) -> dict[str, Participant]:
        """Every participant a registered saga declares, by name."""
        found: dict[str, Participant] = {}
        for definition in self._all.values():
            for participant in definition.participants:
                if found.setdefault(participant.name, participant) != participant:
                    raise ValueError(f"participant {participant.name} is declared twice, apart")
        return found
