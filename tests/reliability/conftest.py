"""The dashboard's fixtures (users of each role, the embedded connection, the worker stand-in)."""

from tests.dashboard.conftest import *  # noqa: F403
