"""Loguru set-up shared by every Podrelay process, with secrets masked in every record."""

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
        for secret in secrets:
            if secret in record["message"]:
                record["message"] = record["message"].replace(secret, REDACTED)

    logger.remove()
    logger.configure(patcher=mask_secrets)
    fmt = "{time:HH:mm:ss.SSS} | {level: <7} | {name}:{line} | {message}"
    logger.add(sys.stderr, level=settings.log_level.upper(), format=fmt, backtrace=False)
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
