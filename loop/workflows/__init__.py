"""What users run: the only modules that combine services with the core (next-round, status,
init, predictions, adjudication, agreement, validation, export, simulate, demo, training)."""
