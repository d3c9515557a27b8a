"""io subpackage of the DEMO engine."""
