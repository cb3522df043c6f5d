"""Tests of the AWS backend against a moto server on loopback."""
