"""The OAuth 2.0 / OpenID Connect authorisation server of Kanol.

``metadata`` publishes the discovery documents and the JWKS; ``endpoints`` holds the token,
revocation, introspection and userinfo endpoints; ``clients`` authenticates clients;
``models`` the tables; ``router`` gathers the routes. :mod:`kanol_identity.login` serves
the agents' pages of the authorisation endpoint, :mod:`kanol_identity.tokens` makes and
remembers tokens.
"""
