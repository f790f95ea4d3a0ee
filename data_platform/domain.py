"""How the mock misbehaves on purpose. Standard library only."""

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Control:
    down: bool = False  # every delivery answers 503
    fail_rate: float = 0.0  # this fraction of deliveries answers 500
    latency_ms: int = 0  # every delivery waits this long first


class Behaviour:
    """The current Control, and how many deliveries are being handled right now."""

    def __init__(self) -> None:
        self.control = Control()
        self.in_flight = 0
        self.failed = 0  # deliveries answered 500 on purpose (fail_rate), since the start
        self._lock = threading.Lock()
        self._random = random.Random()

    def fails_now(self) -> bool:
        if self._random.random() >= self.control.fail_rate:
            return False
        with self._lock:
            self.failed += 1
        return True

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
