"""agentrpc."""
