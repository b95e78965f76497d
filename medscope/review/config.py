"""``ReviewConfig``: the flags of ``medscope review``.

Kept apart from the workspace so that the ``medscope`` command can list these flags without the ``review`` extra
(SQLAlchemy, Starlette, uvicorn) installed: only running the workspace needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medscope.agent.backends import BackendOptions
from medscope.agent.loop import AgentConfig

TOKEN_ENV = "MEDSCOPE_REVIEW_TOKEN"


@dataclass(frozen=True)
class ReviewConfig:
    db: str = field(default="", metadata={"help": "database: a SQLite file (default: review.sqlite in the first "
                                                  "CASES folder) or a URL, e.g. postgresql+psycopg://user@host/db"})
    videos: str | None = field(default=None, metadata={"help": "find videos by name under this folder when a "
                                                               "trace's path does not lead to them"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on; anything but loopback "
                                                             "needs --token"})
    port: int = field(default=8765, metadata={"help": "port to listen on (0: any free port)"})
    token: str | None = field(default=None, metadata={"help": f"access token every request must carry (default: "
                                                              f"${TOKEN_ENV})"})
    export: str | None = field(default=None, metadata={"help": "write the reviews (samples.jsonl, reviews.csv, "
                                                               "WebVTT) to this folder and stop, without serving"})
    export_dir: str = field(default="", metadata={"help": "where the page's Export writes (default: "
                                                          "review-export beside the database)"})
    cache_dir: str = field(default="", metadata={"help": "transcoded clips (default: review-cache beside the "
                                                         "database)"})
    backend: str = field(default="hf", metadata={"help": "questions asked in the page: hf | openai | oracle | "
                                                         "teacher | uniform | random"})
    model: str | None = field(default=None, metadata={"help": "hf: model folder (default: the built-in "
                                                              "medscope-tiny); openai: model name"})
    base_url: str | None = field(default=None, metadata={"help": "openai: server URL"})
    options: BackendOptions = field(default_factory=BackendOptions)
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: use 0-65535")
