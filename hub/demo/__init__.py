"""The demo: a synthetic multi-practice MSO fed through the real connectors and pipeline."""
