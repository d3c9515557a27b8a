"""flow subpackage of the DEMO engine."""
