"""labelqa: find label errors."""
