"""MLLP transport: the listener that takes HL7 v2 (or any framed) messages over TCP."""
