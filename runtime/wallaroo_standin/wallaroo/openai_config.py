"""``OpenaiConfig``: accepted and recorded (local pipelines have no OpenAI-compatible endpoint)."""

from ._settings import Settings

__all__ = ["OpenaiConfig"]


class OpenaiConfig(Settings):
    def __init__(self, enabled=False, completion_config=None, chat_completion_config=None, **settings):
        super().__init__(enabled=enabled, completion_config=completion_config or {},
                         chat_completion_config=chat_completion_config or {}, **settings)
