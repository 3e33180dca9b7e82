"""synapse_email_gate: registration tokens by email, bound to a username."""

from typing import Any

from synapse.module_api import ModuleApi


class EmailGate:
    """Placeholder while the module is being built."""

    def __init__(self, config: Any, api: ModuleApi) -> None:
        self._config = config
        self._api = api

    @staticmethod
    def parse_config(config: dict[str, Any]) -> Any:
        return config
