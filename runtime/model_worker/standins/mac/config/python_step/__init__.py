"""What a Python step or a BYOP model is configured with."""

from pathlib import Path
from typing import Optional, Set

__all__ = ["PythonStepConfig", "CustomStepConfig"]


class PythonStepConfig:
    """The model's framework and the folder (or file) it was loaded from."""

    def __init__(self, framework, model_path):
        self.framework = getattr(framework, "value", framework)
        self.model_path = Path(model_path)

    def __repr__(self):
        return f"{type(self).__name__}(framework={self.framework!r}, model_path={str(self.model_path)!r})"


class CustomStepConfig(PythonStepConfig):
    """Adds the module patterns (``*.py``) and the files they matched in ``model_path``."""

    def __init__(self, framework, model_path, modules_to_include: Set[Path] = frozenset({Path("*.py")}),
                 matching_files: Optional[Set[Path]] = None):
        super().__init__(framework, model_path)
        self.modules_to_include = {Path(p) for p in modules_to_include}
        self.matching_files = set(matching_files) if matching_files is not None else {
            match for pattern in self.modules_to_include for match in self.model_path.glob(pattern.as_posix())}
