"""synthetic subpackage of the DEMO engine."""
