"""Test kit for code that uses textstack_sdk: a local TextStack server, a fake clock and
an in-memory transport. Nothing in textstack_sdk imports this package."""

from ._clock import FakeClock
from ._mock_transport import MockTransport
from ._server import FakeTextStackServer

__all__ = ["FakeClock", "FakeTextStackServer", "MockTransport"]
