"""The project's common package: event contracts, taxonomy, settings, Kafka and MongoDB helpers."""
