"""kombu's file-system transport with atomic writes, for the embedded broker.

kombu writes a message file in place, in the folder consumers poll: a consumer can list and
take the file between its creation and its write, read nothing, and fail with JSONDecodeError,
which Celery's worker treats as unrecoverable (it stops), while the message is lost. Here
the message is written under a name no consumer matches, then renamed into place.
"""

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

# Celery's `broker_transport` setting: this module's Transport instead of kombu's own.
TRANSPORT = f"{__name__}:Transport"


class Channel(filesystem.Channel):
    # kombu's own base classes disagree on this signature (`message` vs `payload`).
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put `payload` onto `queue`: whole, or not at all."""
        # Same name scheme as kombu's, which consumers sort by and match on `.{queue}.msg`.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
