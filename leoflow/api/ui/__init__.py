"""api/ui."""
