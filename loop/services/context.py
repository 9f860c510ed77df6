"""What a command needs, built lazily from the settings: Redis, Label Studio, the embedding cache."""

from __future__ import annotations

from functools import cached_property

from loop.core.embeddings import EmbeddingCache, Embedder
from loop.errors import ConfigError, NotInitialised
from loop.services.labelstudio import LabelStudioClient
from loop.services.settings import Settings
from loop.services.stack import Workspace, credentials, redis_url
from loop.services.store import Store


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.workspace = Workspace(settings)

    @cached_property
    def store(self) -> Store:
        return Store.connect(redis_url(self.settings))

    @cached_property
    def ls(self) -> LabelStudioClient:
        if self.settings.label_studio_url and not self.settings.label_studio_token:
            raise ConfigError(f"LOOP_LABEL_STUDIO_URL points at {self.settings.label_studio_url}; set "
                              "LABEL_STUDIO_USER_TOKEN to its API token (Account & Settings, legacy token)")
        return LabelStudioClient(self.settings.ls_url, credentials(self.settings).token,
                                 timeout=self.settings.request_timeout)

    @cached_property
    def cache(self) -> EmbeddingCache:
        return EmbeddingCache(self.workspace.embeddings)

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder()

    def project_id(self, explicit: int | None = None) -> int:
        p = explicit if explicit is not None else self.store.current_project()
        if p is None or self.store.project(p) is None:
            raise NotInitialised("no loop project here yet; create one with `loop init DATA --labels A,B`"
                                 + (f" (project {explicit} is unknown)" if explicit is not None else ""))
        return p
