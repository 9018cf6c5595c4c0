"""The dashboard's fixtures (users of each role, the embedded connection, the worker stand-in),
and test_roles' `objects` (an audience and a marketer's import of it) for walking every URL."""

from tests.dashboard.conftest import *  # noqa: F403
from tests.dashboard.test_roles import objects  # noqa: F401
