"""End-to-end tests: real Kafka clients against a real strom broker process."""
