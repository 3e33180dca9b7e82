"""Integration-test harness: a mail catcher, a private PostgreSQL and a real Synapse."""
