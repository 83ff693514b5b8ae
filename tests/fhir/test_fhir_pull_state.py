"""The high-water marks of pulls (hub.store.pull_state), on SQLite and PostgreSQL."""

from hub.store.engine import get_engine
from hub.store.pull_state import get_watermark, list_watermarks, set_watermark


def test_marks_are_kept_per_practice_source_and_type(database_url: str) -> None:
    engine = get_engine(database_url)
    base = "https://fhir.north.example/r4"
    assert get_watermark(engine, "north", base, "Patient") is None
    set_watermark(engine, "north", base, "Patient", "2025-01-01T08:00:00+00:00")
    set_watermark(engine, "north", base, "Patient", "2025-01-02T08:00:00+00:00")
    set_watermark(engine, "north", base, "Slot", "2025-01-03T08:00:00Z")
    set_watermark(engine, "south", base, "Patient", "2024-12-31T00:00:00Z")
    assert get_watermark(engine, "north", base, "Patient") == "2025-01-02T08:00:00+00:00"
    assert get_watermark(engine, "north", "https://other.example", "Patient") is None
    assert [(m["resource_type"], m["high_water"]) for m in list_watermarks(engine, "north")] == [
        ("Patient", "2025-01-02T08:00:00+00:00"), ("Slot", "2025-01-03T08:00:00Z")]
