"""The three services of the survey pipeline."""
