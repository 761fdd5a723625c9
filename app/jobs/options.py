"""What a request may ask of its jobs, and the checks a schema cannot make.

`GenerationOptions` are shared by every job of one request (the API's generate and batch
bodies extend it with their prompts; the seed's tasks validate their arguments with it too);
`check_options` applies the settings' bounds and the webhook URL policy.
"""

from typing import Annotated, Any

from pydantic import AnyHttpUrl, Field, StringConstraints, TypeAdapter

from app.core.config import Settings
from app.core.errors import PodrelayError, Unprocessable
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
    model: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="The route (model) to run on, as `GET /models` lists them; unset: the "
        "default route.",
    )
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


def route_and_params(settings: Settings, options: GenerationOptions) -> tuple[str, dict[str, Any]]:
    """The route the request asks for (422 `unknown_model` for none of the catalogue's), and
    its jobs' parameters: the request's, the route's defaults for those it left out, within the
    route's bounds (422 `out_of_bounds` past them)."""
    catalogue = settings.catalogue
    name = options.model or catalogue.default
    route = catalogue.routes.get(name)
    if route is None:
        raise Unprocessable(
            f"unknown model {name!r}; the models are: {', '.join(sorted(catalogue.routes))}",
            code="unknown_model",
        )
    params = params_json(options)
    params.update(
        {key: value for key, value in route.defaults.items() if key not in options.model_fields_set}
    )
    bounds = route.bounds
    limits = {
        "width": bounds.max_width,
        "height": bounds.max_height,
        "num_inference_steps": bounds.max_steps,
        "num_images": bounds.max_images,
    }
    for key, limit in limits.items():
        if params[key] > limit:
            raise Unprocessable(
                f"{key} must be at most {limit} on the {name!r} model", code="out_of_bounds"
            )
    return name, params
