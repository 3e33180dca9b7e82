"""`python -m synapse_email_gate.cli`: the `synapse-email-gate` command."""

import sys

from synapse_email_gate.cli import main

sys.exit(main())
