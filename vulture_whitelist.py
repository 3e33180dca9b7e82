"""Names vulture reports as unused that are used from outside its view (`vulture`,
configured in pyproject.toml). Never imported or run: vulture only reads the names.

Keep it short. A name here needs a reason; code that is really unused is deleted,
not listed (the entries under "dead" wait for that clean-up, issue 15).
"""

# ruff: noqa
_ = object()

# Python and Twisted call these by name.
__getattr__  # synapse_email_gate/__init__.py: the lazy EmailGate export (PEP 562)
_.isLeaf  # web/resource.py: twisted.web.resource.Resource reads it
_._async_render  # web/resource.py: synapse.http.server.DirectServeJsonResource calls it
_.getChildWithDefault  # web/resource.py: twisted.web.resource.Resource's path walk calls it

# Synapse calls these by name.
_.parse_config  # module.py: EmailGate.parse_config, at start-up
# Synapse calls the registration callbacks with these keyword arguments.
email_threepid  # requests/registration.py
request_info  # requests/registration.py
auth_provider_id  # requests/registration.py

# Jinja templates call the translator: {{ _("key") }}.
_.__call__  # config/i18n.py Translator

# Attributes set on library objects, read by the library.
_.body_encoding  # mail/mime.py: email.charset.Charset
_.header_encoding  # mail/mime.py: email.charset.Charset
_.case_sensitive  # rules/usernames.py: re2.Options
_.log_errors  # rules/usernames.py: re2.Options

# Public API used by tests, benchmarks and docs (docs/challenge.md names solve).
_.solve  # rules/proof_of_work.py: the reference solver
_.as_wire  # mail/mime.py: the bytes an SMTP server receives
_.matches  # rules/usernames.py UsernamePatterns, rules/ips.py IpRules: one-value checks
MAX_NONCE_LENGTH  # rules/proof_of_work.py: documents the nonce regex

