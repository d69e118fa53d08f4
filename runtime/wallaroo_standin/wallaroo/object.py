"""The wallaroo SDK's exceptions, by the names, arguments and texts the SDK gives them.

Orchestrations catch them by name (``except EntityNotFoundError:`` around
``pipelines_by_name``), so each is a plain ``Exception`` subclass as in the SDK, and a lookup
raises exactly the kind the SDK raises. Uncaught in a task, each is printed as one line
(``orchzip_one_line``), with what to do locally when the stand-in knows (``orchzip_hint``).
"""

__all__ = [
    "RequiredAttributeMissing", "ModelConversionError", "ModelConversionTimeoutError",
    "EntityNotFoundError", "LimitError", "UserLimitError", "DeploymentError", "InvalidNameError",
    "CommunicationError",
]


class _SdkError(Exception):
    orchzip_one_line = True
    orchzip_hint = None


class RequiredAttributeMissing(_SdkError):
    """An API object was made without a required attribute."""

    def __init__(self, class_name, attribute_name):
        super().__init__(f"{class_name}: Missing required attribute '{attribute_name}' in response")


class ModelConversionError(_SdkError):
    def __init__(self, e):
        super().__init__(f"Model failed to convert: {e}")


class ModelConversionTimeoutError(_SdkError):
    def __init__(self, e):
        super().__init__(f"Model conversion did not finish: {e}")


class EntityNotFoundError(_SdkError):
    """No object of this kind with these identifiers (locally: in orchzip's state)."""

    def __init__(self, entity_type, params):
        super().__init__(f"{entity_type} not found: {params}")
        self.entity_type = entity_type
        self.params = params


class LimitError(_SdkError):
    def __init__(self, e):
        super().__init__(
            "You have reached a license limit in your Wallaroo instance. In order to add additional "
            "resources, you can remove some of your existing resources. If you have any questions "
            f"contact us at community@wallaroo.ai: {e}"
        )


class UserLimitError(_SdkError):
    def __init__(self):
        super().__init__(
            "You have reached the user limit in your Wallaroo instance. In order to add additional "
            "users, you can deactivate existing ones. If you have any questions contact us at "
            "community@wallaroo.ai"
        )


class DeploymentError(_SdkError):
    def __init__(self, e):
        super().__init__(f"Model failed to deploy: {e}")


class InvalidNameError(_SdkError):
    def __init__(self, name, req):
        # The SDK's text, its unbalanced quote included.
        super().__init__(f"Name '{name} is invalid: {req}")


class CommunicationError(_SdkError):
    """Never raised locally (there is no server to lose); defined for ``except`` clauses."""

    def __init__(self, e):
        super().__init__(f"Network communication failed: {e}")
