"""Storage: the Store protocol, an in-memory store and the Redis store, and every Redis key in keys.py."""

from flagsvc.store.base import ConfigVersion, Store
from flagsvc.store.memory import MemoryStore
from flagsvc.store.redis_store import RedisStore

__all__ = ["ConfigVersion", "MemoryStore", "RedisStore", "Store"]
