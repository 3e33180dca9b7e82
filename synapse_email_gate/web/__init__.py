"""HTTP: router, responses, pages, request API, token landing, registration, admin API."""
