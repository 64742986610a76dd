"""Kanol identity: organisations, API clients, signing keys and the OAuth 2.0 server."""
