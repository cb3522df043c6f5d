"""Fixtures for the AWS tests: the session's moto server and a clean AWS environment per test."""

from __future__ import annotations

from .moto_server import aws_env, moto_server  # noqa: F401  (pytest discovers fixtures by name)
