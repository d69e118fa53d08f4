"""``ContinuousBatchingConfig``: accepted and recorded (a local pipeline does not batch)."""

from ._settings import Settings

__all__ = ["ContinuousBatchingConfig"]


class ContinuousBatchingConfig(Settings):
    def __init__(self, max_concurrent_batch_size=1, **settings):
        if not isinstance(max_concurrent_batch_size, int) or max_concurrent_batch_size <= 0:
            raise ValueError("max_concurrent_batch_size must be an integer greater than 0")
        super().__init__(max_concurrent_batch_size=max_concurrent_batch_size, **settings)
