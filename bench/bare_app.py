"""The baseline of `bench.submit`: a bare FastAPI app with the same route, doing no real work.

    uvicorn bench.bare_app:app

`POST /api/v1/runpod/generate` validates a small pydantic body and answers 202 with a small JSON
object: what any FastAPI endpoint costs under uvicorn (HTTP parsing, routing, validation,
serialization), with no database, broker, auth or rate limit behind it.
"""

import itertools

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    width: int = Field(default=1024, ge=256, le=2048, multiple_of=8)
    height: int = Field(default=1024, ge=256, le=2048, multiple_of=8)


class Accepted(BaseModel):
    id: str
    status: str
    prompt: str


app = FastAPI(title="bare")
_ids = itertools.count(1)


@app.post("/api/v1/runpod/generate", status_code=202)
async def generate(body: GenerateBody) -> Accepted:
    return Accepted(id=f"job_{next(_ids)}", status="pending", prompt=body.prompt)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
