"""benchpy: a FastAPI app with real PyPI dependencies (bench/build_cache.py)."""

import os

import requests  # noqa: F401
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Answer(BaseModel):
    ok: bool


@app.get("/")
def root() -> Answer:
    return Answer(ok=True)


uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
