"""Onboarding an acquired practice: dry-run scorecard, resumable backfill, go-live checks."""
