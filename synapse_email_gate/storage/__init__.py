"""All SQL: schema, runner, requests, tokens, outbox, buckets, moderation tables."""
