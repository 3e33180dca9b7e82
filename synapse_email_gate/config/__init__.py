"""The configuration: homeserver.yaml parsed and checked, listeners, policy lists, pages, i18n."""
