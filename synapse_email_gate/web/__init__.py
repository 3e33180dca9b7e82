"""HTTP resources of the module, mounted under /_synapse/client/email_gate."""
