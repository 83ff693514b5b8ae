"""A test plugin (loaded with HUB_PLUGINS) that makes each record slow, so a worker can be killed mid-batch."""

import os
import time

from hub import hookimpl


@hookimpl
def hub_transform_record(record):
    time.sleep(float(os.environ.get("HUB_TEST_SLOW_SECONDS", "0")))
    if record.get("source_id") == os.environ.get("HUB_TEST_FAIL_SOURCE_ID", "\0"):
        raise RuntimeError("a plugin refused this record")
    return None
