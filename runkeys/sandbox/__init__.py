"""A GitHub API stand-in for tests, the demo, and dry runs of key specs (`runkeys sandbox`)."""
