"""Loguru set-up shared by every Podrelay process, with secrets masked in every record."""

import logging
import re
import sys
from typing import TYPE_CHECKING

from loguru import logger

from app.core.config import Settings

if TYPE_CHECKING:
    from loguru import Record

REDACTED = "***"


def configure_logging(settings: Settings, *, to_file: bool = True) -> None:
    """Send logs to stderr (and `LOG_FILE`) at `LOG_LEVEL`, masking the RunPod API key."""
    secrets = [
        value
        for value in (
            settings.runpod_api_key.get_secret_value() if settings.runpod_api_key else "",
        )
        if len(value) >= 4
    ]

    def mask_secrets(record: "Record") -> None:
        message = redact_url_secrets(record["message"])
        for secret in secrets:
            message = message.replace(secret, REDACTED)
        record["message"] = message

    logger.remove()
    logger.configure(patcher=mask_secrets)
    fmt = "{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} | {message}"
    # `diagnose` would print the values of a traceback's variables: API keys, secrets.
    logger.add(
        sys.stderr,
        level=settings.log_level.upper(),
        format=fmt,
        backtrace=False,
        diagnose=False,
    )
    if to_file and settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(
            settings.log_file,
            level=settings.log_level.upper(),
            format=fmt,
            rotation="20 MB",
            retention=5,
            backtrace=False,
            diagnose=False,
        )


_WEBHOOK_TOKEN = re.compile(r"(/webhooks/runpod/)[^/?\s\"]+")


def redact_url_secrets(text: str) -> str:
    """Mask the per-submission webhook secret in a URL or log line."""
    return _WEBHOOK_TOKEN.sub(rf"\g<1>{REDACTED}", text)


class _AccessLogRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url_secrets(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def redact_access_logs() -> None:
    """Keep webhook secrets out of uvicorn's access log (the path carries them)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, _AccessLogRedactor) for existing in access.filters):
        access.addFilter(_AccessLogRedactor())
