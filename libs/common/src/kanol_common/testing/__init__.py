"""Helpers for the tests of Kanol services: tokens, delivery fixtures."""
