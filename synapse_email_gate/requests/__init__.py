"""A token request: the service, the challenge gate, registration callbacks, client address."""
