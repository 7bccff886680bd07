"""The demo: a deterministic sample shaped like the 2024 surveys, posted through the intake."""
