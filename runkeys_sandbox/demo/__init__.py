"""`runkeys demo` and `runkeys sandbox --keys`: the action and the service run against the
stand-in on this machine."""
