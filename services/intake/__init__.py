"""intake: takes survey webhooks and pilot announcements, validates them, publishes to Kafka."""
