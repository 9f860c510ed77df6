"""What a command needs, built lazily from the settings: Redis, Label Studio, item vectors."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from loop.errors import ConfigError, NotInitialised
from loop.services.settings import Settings
from loop.services.workspace import Workspace, credentials, redis_url

if TYPE_CHECKING:  # imported where they are built: a command that needs no model loads none of it
    from loop.core.embeddings import Embedder
    from loop.services.labelstudio import LabelStudioClient
    from loop.services.store import Store
    from loop.services.vectors import EmbeddingCache, ItemVectors


class Context:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.workspace = Workspace(settings)

    @cached_property
    def store(self) -> Store:
        from loop.services.store import Store

        return Store.connect(redis_url(self.settings))

    @cached_property
    def ls(self) -> LabelStudioClient:
        from loop.services.labelstudio import LabelStudioClient

        if self.settings.label_studio_url and not self.settings.label_studio_token:
            raise ConfigError(f"LOOP_LABEL_STUDIO_URL points at {self.settings.label_studio_url}; set "
                              "LABEL_STUDIO_USER_TOKEN to its API token (Account & Settings, legacy token)")
        return LabelStudioClient(self.settings.ls_url, credentials(self.settings).token,
                                 timeout=self.settings.request_timeout)

    @cached_property
    def cache(self) -> EmbeddingCache:
        from loop.services.vectors import EmbeddingCache

        return EmbeddingCache(self.workspace.embeddings)

    @cached_property
    def embedder(self) -> Embedder:
        """The engine LOOP_EMBEDDING_BACKEND names (picklable: a worker process loads its own model)."""
        from loop.services import onnx_model

        return onnx_model.embedder(self.settings)

    @cached_property
    def vectors(self) -> ItemVectors:
        """Item vectors from this process's cache, embedding what it lacks (texts from Redis, else
        from Label Studio's tasks)."""
        from loop.services.vectors import ItemVectors

        return ItemVectors(self.store, self.cache, self.embedder, ls_texts=lambda p: self.ls.task_texts(p))

    def project_id(self, explicit: int | None = None) -> int:
        p = explicit if explicit is not None else self.store.current_project()
        if p is None or self.store.project(p) is None:
            raise NotInitialised("no loop project here yet; create one with `loop init DATA --labels A,B`"
                                 + (f" (project {explicit} is unknown)" if explicit is not None else ""))
        return p
