"""Mail: the outbox delivered over SMTP, composed from templates, built as MIME."""
