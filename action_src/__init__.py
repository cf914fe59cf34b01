"""The container action's entry points: `main` (mint) and `post` (job-end cleanup). Thin."""
