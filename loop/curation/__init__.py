"""Before anyone trains on the labels: the validator, the export writers and the data card."""
