"""runkeys' GitHub stand-in (`server/`, `routes/`) and the demo built on it (`demo/`): a separate
distribution, installed by the `sandbox` extra, in neither image."""
