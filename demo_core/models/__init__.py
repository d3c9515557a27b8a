"""models subpackage of the DEMO engine."""
