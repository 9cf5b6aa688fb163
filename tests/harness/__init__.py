"""Launching our daemons and third-party peers; shared by tests/ and bench/.

Tests import it as ``harness`` (pytest puts ``tests/`` on ``sys.path``); bench imports it
as ``tests.harness`` from the repository root.
"""
