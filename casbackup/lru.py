"""LRU: a bounded map that forgets its least recently used entries, the one such cache of
casbackup (the store's decoded trees, a mount's blob plaintexts).

Invariants: the total weight held (``weigh`` of each value, 1 by default) is at most
``max_weight``, except that the newest entry is always kept, however heavy; ``get``
makes an entry the most recently used; every method is safe across threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _one(_value: object) -> int:
    return 1


class LRU(Generic[K, V]):
    def __init__(self, max_weight: int, weigh: Callable[[V], int] = _one) -> None:
        self.max_weight = max_weight
        self._weigh = weigh
        self._items: OrderedDict[K, V] = OrderedDict()
        self.held = 0  # the total weight of the entries
        self._mu = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._mu:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._mu:
            old = self._items.pop(key, None)
            if old is not None:
                self.held -= self._weigh(old)
            self._items[key] = value
            self.held += self._weigh(value)
            while self.held > self.max_weight and len(self._items) > 1:
                _, gone = self._items.popitem(last=False)
                self.held -= self._weigh(gone)

    def __contains__(self, key: object) -> bool:
        with self._mu:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._mu:
            self._items.clear()
            self.held = 0
