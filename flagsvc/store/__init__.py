"""Storage: the roles every store plays (`roles`), an in-memory store (`memory`), the Redis store (`redis_store`,
with its Lua scripts in `lua/`), and every Redis key (`keys`).

The implementations load on first use, so code that needs only the roles (the application tier, the HTTP layer)
never imports redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flagsvc.store.roles import ConfigVersion, Store

if TYPE_CHECKING:
    from flagsvc.store.memory import MemoryStore
    from flagsvc.store.redis_store import RedisStore

__all__ = ["ConfigVersion", "MemoryStore", "RedisStore", "Store"]


def __getattr__(name: str) -> Any:
    if name == "MemoryStore":
        from flagsvc.store.memory import MemoryStore

        return MemoryStore
    if name == "RedisStore":
        from flagsvc.store.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module 'flagsvc.store' has no attribute {name!r}")
