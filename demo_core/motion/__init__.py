"""motion subpackage of the DEMO engine."""
