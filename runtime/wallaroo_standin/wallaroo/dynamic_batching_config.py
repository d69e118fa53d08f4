"""``DynamicBatchingConfig``: accepted and recorded (a local pipeline does not batch)."""

from ._settings import Settings

__all__ = ["DynamicBatchingConfig"]


class DynamicBatchingConfig(Settings):
    def __init__(self, max_batch_delay_ms=10, batch_size_target=4, batch_size_limit=None):
        for name, value in (("max_batch_delay_ms", max_batch_delay_ms), ("batch_size_target", batch_size_target)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be an integer greater than 0")
        super().__init__(max_batch_delay_ms=max_batch_delay_ms, batch_size_target=batch_size_target,
                         batch_size_limit=batch_size_limit)
