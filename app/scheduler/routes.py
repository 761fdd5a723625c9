"""Routes and their endpoints: a route is what a request asks for by `model`, served by one or
more RunPod endpoints. With no catalogue, RUNPOD_URL and RUNPOD_API_KEY make the one route,
`default`."""

from dataclasses import dataclass

DEFAULT_ROUTE = "default"


@dataclass(frozen=True)
class Endpoint:
    """A RunPod endpoint jobs are dispatched to, on behalf of one route."""

    id: str
    route: str
