"""A failing statement's message never quotes the values it was given (they are patient data)."""

import traceback

import pytest
import sqlalchemy as sa

from hub.store.engine import create_engine


def test_a_store_error_names_no_bound_value(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE phi_probe (id INTEGER PRIMARY KEY, name VARCHAR(40))"))
    try:
        with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO phi_probe (id, name) VALUES (:id, :name)"),
                         [{"id": 1, "name": "SMITH^JOHN 1970-01-01"}, {"id": 1, "name": "SMITH^JOHN 1970-01-01"}])
        assert "SMITH" not in str(caught.value) and "1970-01-01" not in str(caught.value)
        assert "parameters hidden" in str(caught.value)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE phi_probe"))
        engine.dispose()


def test_a_store_failure_reason_names_the_error_but_no_value_the_database_quotes(pg_url: str) -> None:
    from hub.pipeline.process import store_failure

    engine = create_engine(pg_url)
    try:
        with pytest.raises(sa.exc.DataError) as caught, engine.connect() as conn:
            conn.execute(sa.text("SELECT CAST(:v AS date)"), {"v": "SMITH^JOHN"})
        said = store_failure(caught.value)
        assert "SMITH" not in said and "(22007): invalid input syntax for type date: …" in said
    finally:
        engine.dispose()


def test_a_failed_job_raises_its_reason_without_the_driver_error_behind_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """rq logs and keeps a failed job's traceback: the driver's error a store failure chains (its DETAIL
    line) may quote the batch's values, so the job raises the reason alone."""
    from hub.errors import StoreError
    from hub.pipeline import jobs

    def failing(*args: object, **kwargs: object) -> object:
        try:
            raise ValueError('Key (source_id)=(MRN-SMITH) already exists')
        except ValueError as driver:
            raise StoreError("store failure: IntegrityError (23505): duplicate key value") from driver

    monkeypatch.setattr(jobs, "process_messages", failing)
    monkeypatch.setattr(jobs, "_factory", lambda *, database_url: type("R", (), {"database_url": "sqlite://"})())
    jobs._runtime.cache_clear()
    try:
        with pytest.raises(StoreError) as caught:
            jobs.process_batch([1])
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert "MRN-SMITH" not in "".join(traceback.format_exception(caught.value))
    finally:
        jobs._factory = None
        jobs._runtime.cache_clear()


def test_a_job_failing_unexpectedly_keeps_its_type_and_place_but_not_its_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.pipeline import jobs

    def failing(*args: object, **kwargs: object) -> object:
        return int("SMITH^JOHN")  # a ValueError whose message quotes the value

    monkeypatch.setattr(jobs, "process_messages", failing)
    monkeypatch.setattr(jobs, "_factory", lambda *, database_url: type("R", (), {"database_url": "sqlite://"})())
    jobs._runtime.cache_clear()
    try:
        with pytest.raises(jobs.JobFailed) as caught:
            jobs.process_batch([1])
        told = "".join(traceback.format_exception(caught.value))
        assert "SMITH" not in told
        assert "ValueError at test_no_values_in_errors.py:" in str(caught.value) and "in failing" in str(caught.value)
    finally:
        jobs._factory = None
        jobs._runtime.cache_clear()
