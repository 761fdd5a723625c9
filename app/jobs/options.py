"""What a request may ask of its jobs, and the checks a schema cannot make.

`GenerationOptions` are shared by every job of one request (the API's generate and batch
bodies extend it with their prompts; the seed's tasks validate their arguments with it too);
`check_options` applies the settings' bounds and the webhook URL policy.
"""

from typing import Annotated, Any

from pydantic import AnyHttpUrl, Field, StringConstraints, TypeAdapter

from app.core.config import Settings
from app.core.errors import PodrelayError
from app.notify.urls import UnsafeWebhookUrl, check_webhook_url
from app.scheduler.fair import Priority
from app.services.generation_defaults import MAX_PROMPT_LENGTH, GenerationParams

# PostgreSQL text cannot hold a NUL byte (the statement fails, even a lookup), so no string
# input that reaches the ledger may carry one: it is a 422 like any other invalid value.
NO_NUL = r"^[^\x00]*$"
Prompt = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=MAX_PROMPT_LENGTH, pattern=NO_NUL
    ),
]
NegativePrompt = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=MAX_PROMPT_LENGTH, pattern=NO_NUL)
]
WebhookUrl = Annotated[AnyHttpUrl, Field(description="Signed POST when the job ends.")]
PROMPT = TypeAdapter(Prompt)
_PARAM_FIELDS = set(GenerationParams.model_fields)


class GenerationOptions(GenerationParams):
    negative_prompt: NegativePrompt | None = None
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds before the job is cancelled (default 300)."
    )
    webhook_url: WebhookUrl | None = None
    priority: Priority = Field(
        default=Priority.NORMAL,
        description="`high`, `normal` or `low`: higher leaves the queue first; a key may ask "
        "for up to its own maximum (403 `priority_not_allowed` past it).",
    )


def check_options(settings: Settings, options: GenerationOptions) -> float:
    """Validate what the schema cannot; returns the job timeout to use. Checking a webhook URL
    resolves its host name: call it off the event loop when there is one."""
    timeout = options.timeout if options.timeout is not None else settings.runpod_job_timeout
    if timeout > settings.job_max_timeout:
        raise PodrelayError(
            f"timeout must be at most {settings.job_max_timeout:g} s", code="timeout_too_long"
        )
    if options.webhook_url is not None:
        try:
            check_webhook_url(
                str(options.webhook_url), allow_private=settings.private_webhook_urls_allowed
            )
        except UnsafeWebhookUrl as error:
            raise PodrelayError(str(error), code="webhook_url_refused") from None
    return timeout


def params_json(options: GenerationOptions) -> dict[str, Any]:
    """The generation parameters among the options, as JSON values (what a job keeps)."""
    return options.model_dump(mode="json", include=_PARAM_FIELDS)
