from pathlib import Path

from hub_example_pipe import PipeAppointments

from hub.testing import connector_test_class

SAMPLES = sorted((Path(__file__).parent.parent / "samples").glob("*.pipe"))

TestPipeAppointments = connector_test_class(
    PipeAppointments,
    samples=SAMPLES,
    malformed=[b"#HUBPIPE v1\nAPPT|only|three", b"#HUBPIPE v1\nAPPT|A|M|P|2025-01-01T09:00:00Z|30|NP|lost"],
)
