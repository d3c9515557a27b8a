"""tools subpackage of the DEMO engine."""
