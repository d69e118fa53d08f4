"""What an ``orchzip.yaml`` may say, and reading one with every error located.

The schema is a set of pydantic models that refuse unknown keys. The YAML is read through
pyyaml's composer, whose nodes carry line numbers, so that each schema error can name the
file, the line and the key, as ``orchzip.yaml:12: tasks.nightly.schedul: unknown key``.
"""

from typing import Any, Dict, List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchzip.errors import ConfigError, OrchzipError
from orchzip.runtime.scheduler.policies import OVERLAP_POLICIES

__all__ = ["Project", "ProjectFileError", "load_project", "SCHEDULE_ONLY"]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
Name = Field(pattern=NAME_PATTERN)
# Task settings that only mean something with a cron schedule, or for a continuous task.
SCHEDULE_ONLY = ("tz", "overlap", "misfire_grace", "retries", "retry_backoff")
CONTINUOUS_ONLY = ("backoff", "max_backoff", "stable_after", "crash_loop_after")


class ProjectFileError(ConfigError):
    """The project file cannot be read or does not fit the schema; each line names file:line: key."""

    @classmethod
    def from_problems(cls, problems):
        if len(problems) == 1:
            return cls(problems[0])
        return cls(f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Connection(_Strict):
    type: str = Field(min_length=1, description="DUCKDB, FILE, BIGQUERY, HTTP (other Wallaroo types are kept as given)")
    details: Dict[str, Any] = {}
    workspaces: List[str] = []

    @field_validator("type")
    @classmethod
    def _upper(cls, value):
        return value.upper()


class Model(_Strict):
    """A registered model (``orchzip models upload``): a changed file is uploaded as its next version."""
    file: str = Field(min_length=1, description="the model's file or folder, relative to orchzip.yaml")
    framework: Literal["onnx", "python", "custom", "sklearn", "xgboost"] = "onnx"
    input_schema: Optional[Dict[str, str]] = None  # column -> Arrow type, as `models upload --input-schema`
    output_schema: Optional[Dict[str, str]] = None
    requirements: Optional[Union[str, List[str]]] = None  # a requirements.txt (relative path) or its lines
    tensor_column: Optional[str] = None
    workspace: Optional[str] = None
    convert_to_onnx: bool = False  # uploaded converted to ONNX, as `models upload --convert-to-onnx`

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _arrow_types(cls, value):
        from orchzip.runtime.model_schemas import parse_schema, schema_to_json
        return None if value is None else _as_value_error(lambda: schema_to_json(parse_schema(value, "the schema")))

    @model_validator(mode="after")
    def _convertible(self):
        if not self.convert_to_onnx:
            return self
        if self.framework not in ("sklearn", "xgboost"):
            raise ValueError(f"convert_to_onnx converts sklearn and xgboost models, not {self.framework} ones: "
                             f"set framework: sklearn or xgboost, or remove convert_to_onnx")
        if self.tensor_column is not None:
            # The converted model reads the input schema's column; a second name could only disagree.
            raise ValueError("tensor_column does not apply with convert_to_onnx (the converted model reads its "
                             "input_schema's column): remove tensor_column")
        return self


class Pipeline(_Strict):
    model: Optional[str] = Field(default=None, min_length=1, description="an ONNX model file, relative to orchzip.yaml")
    steps: List[str] = []  # MODEL or MODEL:VERSION of models:, in order (instead of model)
    tensor_column: Optional[str] = None
    workspace: Optional[str] = None  # a pipeline lives in at most one workspace, as on Wallaroo

    @model_validator(mode="after")
    def _model_or_steps(self):
        if (self.model is None) == (not self.steps):
            raise ValueError("give a pipeline either model: FILE.onnx or steps: [MODEL, ...]")
        return self


class Orchestration(_Strict):
    path: str = Field(min_length=1, description="the orchestration folder (or a zip), relative to orchzip.yaml")
    workspace: Optional[str] = None


class Task(_Strict):
    orchestration: str = Field(min_length=1)
    args: Dict[str, Any] = {}
    timeout: Optional[float] = Field(default=None, gt=0)
    schedule: Optional[str] = None
    tz: Optional[str] = None
    overlap: Optional[Literal[OVERLAP_POLICIES]] = None
    misfire_grace: Optional[float] = Field(default=None, ge=0)
    retries: Optional[int] = Field(default=None, ge=0)
    retry_backoff: Optional[float] = Field(default=None, gt=0)
    no_env: bool = False
    # As `orchzip run --continuously` and Wallaroo's run_continuously: kept running until killed.
    continuously: bool = False
    backoff: Optional[float] = Field(default=None, gt=0)
    max_backoff: Optional[float] = Field(default=None, gt=0)
    stable_after: Optional[float] = Field(default=None, gt=0)
    crash_loop_after: Optional[int] = Field(default=None, ge=1)
    log_max_bytes: Optional[Any] = None  # bytes, or a size such as 16MiB or 512k
    wallaroo_version: Optional[str] = None  # this task's release (default: the project's)

    @field_validator("log_max_bytes")
    @classmethod
    def _size(cls, value):
        from orchzip.runtime.task_logs import resolve_max_bytes
        if value is None:
            return None
        try:
            return resolve_max_bytes(value)
        except OrchzipError as err:
            raise ValueError(str(err).replace("--log-max-bytes must", "must")) from None

    @field_validator("wallaroo_version", mode="before")
    @classmethod
    def _task_release(cls, value):
        return _known_release(value)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value):
        from orchzip.runtime.scheduler.trigger import CronTrigger
        return None if value is None else _as_value_error(lambda: CronTrigger(value, "UTC").expr)

    @field_validator("tz")
    @classmethod
    def _zone(cls, value):
        from orchzip.runtime.scheduler.trigger import resolve_zone
        return None if value is None else _as_value_error(lambda: str(resolve_zone(value)))

    @model_validator(mode="after")
    def _schedule_settings(self):
        if self.continuously and self.schedule is not None:
            raise ValueError("a task runs on a schedule or continuously, not both: remove schedule or continuously")
        if self.continuously and self.timeout is not None:
            raise ValueError("timeout does not apply to a continuous task, which runs until killed: remove it")
        stray = [key for key in SCHEDULE_ONLY if getattr(self, key) is not None]
        if self.schedule is None and stray:
            raise ValueError(f"{', '.join(stray)} only apply to a scheduled task: add schedule: \"CRON\" or remove them")
        stray = [key for key in CONTINUOUS_ONLY if getattr(self, key) is not None]
        if not self.continuously and stray:
            raise ValueError(f"{', '.join(stray)} only apply to a continuous task: add continuously: true or remove them")
        return self


class Project(_Strict):
    version: Literal[1] = 1
    workspaces: List[str] = []
    connections: Dict[str, Connection] = {}
    models: Dict[str, Model] = {}
    pipelines: Dict[str, Pipeline] = {}
    orchestrations: Dict[str, Orchestration] = {}
    tasks: Dict[str, Task] = {}
    # The Wallaroo release the project targets (see wallaroo_versions.resolve_version).
    wallaroo_version: Optional[str] = None

    @field_validator("wallaroo_version", mode="before")
    @classmethod
    def _known_release(cls, value):
        return _known_release(value)


def _known_release(value):
    from orchzip.runtime.wallaroo_versions import KNOWN_VERSIONS
    if value is not None and str(value) not in KNOWN_VERSIONS:
        raise ValueError(f"unknown Wallaroo version {value!r}; orchzip knows: {', '.join(KNOWN_VERSIONS)}")
    return None if value is None else str(value)


def _as_value_error(make):
    try:
        return make()
    except OrchzipError as err:
        raise ValueError(str(err)) from None


# -- reading the file -----------------------------------------------------------------------
def load_project(path):
    """The :class:`Project` in ``path``; raises :class:`ProjectFileError` naming file:line: key."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ProjectFileError(f"{path} does not exist; write one with: orchzip init, or orchzip export") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectFileError(f"cannot read {path}: {err}") from None
    data, lines = parse_yaml(text, path)
    try:
        project = Project.model_validate(data)
    except ValidationError as err:
        raise ProjectFileError.from_problems([_describe(e, path, lines) for e in err.errors()]) from None
    problems = [f"{path}:{_line(lines, loc)}: {_dotted(loc)}: {text}" for loc, text in check_references(project)]
    if problems:
        raise ProjectFileError.from_problems(problems)
    return project


def parse_yaml(text, path):
    """``(data, lines)``: the YAML's plain data, and the line of every key path in it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise ProjectFileError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise ProjectFileError(f"{path}: not valid YAML: {err}") from None
    lines = {(): 1}
    if root is None:
        return {}, lines
    if not isinstance(root, yaml.MappingNode):
        raise ProjectFileError(f"{path}:{root.start_mark.line + 1}: the file must be a mapping of "
                               "workspaces, connections, pipelines, orchestrations and tasks")
    lines[()] = root.start_mark.line + 1
    return _plain(root, (), lines, path, yaml.SafeLoader("")), lines


def _plain(node, loc, lines, path, constructor):
    if isinstance(node, yaml.MappingNode):
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        try:
            constructor.flatten_mapping(node)  # `<<: *anchor` merge keys: their entries come first
            merged = len(node.value) - own
            result, own_keys = {}, set()
            for index, (key_node, value_node) in enumerate(node.value):
                key = constructor.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    raise ProjectFileError(f"{path}:{line}: {_dotted(loc) or 'top level'}: key {key!r} must be a string")
                if key in own_keys:
                    raise ProjectFileError(f"{path}:{line}: {_dotted(loc + (key,))}: duplicate key "
                                           f"(first at line {lines[loc + (key,)]})")
                if index >= merged:  # a key of this mapping's own overrides a merged one
                    own_keys.add(key)
                lines[loc + (key,)] = line
                result[key] = _plain(value_node, loc + (key,), lines, path, constructor)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or node.start_mark
            raise ProjectFileError(f"{path}:{mark.line + 1}: {_dotted(loc) or 'top level'}: "
                                   f"{getattr(err, 'problem', None) or err}") from None
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            items.append(_plain(item, loc + (index,), lines, path, constructor))
        return items
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as err:
        raise ProjectFileError(f"{path}:{node.start_mark.line + 1}: {_dotted(loc)}: {err}") from None


def _dotted(loc):
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line(lines, loc):
    loc = tuple(loc)
    while loc not in lines:
        loc = loc[:-1]
    return lines[loc]


def _describe(error, path, lines):
    loc = tuple(error["loc"])
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1])) or "none"
        message = f"unknown key (allowed here: {allowed})"
    elif kind == "missing":
        message = "required key missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{path}:{_line(lines, loc)}: {_dotted(loc) or 'top level'}: {message}"


def _allowed_keys(loc):
    """The keys the model at ``loc`` takes (``loc`` as pydantic gives it)."""
    model = Project
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            inner = field.annotation
            args = getattr(inner, "__args__", ())
            model = args[-1] if args else inner  # Dict[str, X] -> X
        # any other part is a name (a key of a Dict[str, X]): same model
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def check_references(project):
    """``(loc, text)`` for every name the file uses but does not declare."""
    workspaces = set(project.workspaces)
    problems = []
    from orchzip.runtime import connection_schemas
    for name, connection in project.connections.items():
        try:
            connection_schemas.validate(name, connection.type, connection.details)
        except OrchzipError as err:
            problems.append((("connections", name), str(err)))
        for index, workspace in enumerate(connection.workspaces):
            if workspace not in workspaces:
                problems.append((("connections", name, "workspaces", index), _undeclared("workspace", workspace, workspaces)))
    for name, model in project.models.items():
        if model.workspace is not None and model.workspace not in workspaces:
            problems.append((("models", name, "workspace"), _undeclared("workspace", model.workspace, workspaces)))
    for name, pipeline in project.pipelines.items():
        if pipeline.workspace is not None and pipeline.workspace not in workspaces:
            problems.append((("pipelines", name, "workspace"), _undeclared("workspace", pipeline.workspace, workspaces)))
        for index, step in enumerate(pipeline.steps):
            model, _, version = step.partition(":")
            if model not in project.models:
                problems.append((("pipelines", name, "steps", index), _undeclared("model", model, project.models)))
            elif version and not version.isdigit():
                problems.append((("pipelines", name, "steps", index), f"the version after ':' must be a number, "
                                 f"e.g. {model}:2"))
    for name, orchestration in project.orchestrations.items():
        if orchestration.workspace is not None and orchestration.workspace not in workspaces:
            problems.append((("orchestrations", name, "workspace"), _undeclared("workspace", orchestration.workspace, workspaces)))
    for name, task in project.tasks.items():
        if task.orchestration not in project.orchestrations:
            problems.append((("tasks", name, "orchestration"),
                             _undeclared("orchestration", task.orchestration, project.orchestrations)))
    for index, workspace in enumerate(project.workspaces):
        if project.workspaces.index(workspace) != index:
            problems.append((("workspaces", index), f"workspace {workspace!r} is listed twice"))
    return problems


def _undeclared(kind, name, known):
    known_text = ", ".join(sorted(known)) or "none"
    return f"{kind} {name!r} is not declared under {kind}s: (declared: {known_text})"
