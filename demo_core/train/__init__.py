"""train subpackage of the DEMO engine."""
