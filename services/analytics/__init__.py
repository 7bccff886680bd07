"""analytics: exact running aggregates of the survey responses, as an API and a dashboard."""
