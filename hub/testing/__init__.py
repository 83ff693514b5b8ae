"""The connector contract suite, for built-in and third-party connectors alike.

In a test module of the connector's package::

    from hub.testing import connector_test_class
    from my_connector import MyConnector

    TestMyConnector = connector_test_class(MyConnector, samples=["samples/a.txt", ...])

pytest then runs the standard tests: the samples are recognised and normalize,
every record fits the common model, normalizing twice gives the same records,
malformed input raises the hub's own error with a message, and no patient data
reaches the logs.
"""

from hub.testing.contract import connector_test_class

__all__ = ["connector_test_class"]
