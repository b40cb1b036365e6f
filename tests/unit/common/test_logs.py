"""Service logging: one JSON line per record with its fields, and libraries that log per
operation kept at WARNING whatever the service's level, so their records are not even built."""

import json
import logging

import pytest

from services.common import logs

pytestmark = pytest.mark.unit


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def test_chatty_libraries_stay_quiet_even_when_the_service_logs_at_debug(restore_logging):
    logs.configure("DEBUG")
    presidio = logging.getLogger("presidio-analyzer")
    assert not presidio.isEnabledFor(logging.DEBUG)
    assert not presidio.isEnabledFor(logging.INFO)
    assert presidio.isEnabledFor(logging.WARNING)
    # Another library may reset the root level later (Faust's worker does): the named
    # loggers keep their own.
    logging.getLogger().setLevel(logging.NOTSET)
    assert not presidio.isEnabledFor(logging.DEBUG)
    assert logging.getLogger("services.anything").isEnabledFor(logging.DEBUG)


def test_a_record_is_one_json_object_with_its_fields(restore_logging, capsys):
    logs.configure("INFO")
    logs.log(logging.getLogger("services.test"), logging.INFO, "stored", chunks=3)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["level"] == "INFO" and record["chunks"] == 3
    assert record["msg"].startswith("stored") and "chunks=3" in record["msg"]
