"""kombu's Redis transport, with which a Celery worker survives Redis restarting.

When the broker connection breaks, Celery's consumer collects the connection (kombu closes its
channels, then detaches the transport from it) and then closes it. Closing a channel can stop
half-way, while it drains a BRPOP from the dead server; when a second channel's close fails
the same way, kombu leaves the task channel open. The later close then hands the channel's
unacknowledged messages back to Redis through a new connection pool built from the detached
transport, and fails with `AttributeError: 'NoneType' object has no attribute 'hostname'`
(celery/kombu#582). Celery treats that as unrecoverable and the worker exits.

Here a detached transport raises a connection error instead, which Celery ignores while it
reconnects, exactly as when Redis cannot be reached: those messages stay in Redis' unacked
set, where the visibility timeout hands them out again (nothing to restore after a restart).
"""

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

# Celery's `broker_transport` setting for a `redis://` broker URL.
TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
