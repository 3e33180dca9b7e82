"""synapse_email_gate: registration tokens by email, bound to a username.

Synapse loads `synapse_email_gate.EmailGate`. It is imported on first use, so
that the `synapse-email-gate` command does not pay for importing Synapse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synapse_email_gate.config.gate import GateConfig
    from synapse_email_gate.module import EmailGate

__all__ = ["EmailGate", "GateConfig"]


def __getattr__(name: str) -> Any:
    # The imports are here, on first use (PEP 562), for the start-up cost above.
    if name == "EmailGate":
        from synapse_email_gate.module import EmailGate

        return EmailGate
    if name == "GateConfig":
        from synapse_email_gate.config.gate import GateConfig

        return GateConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
