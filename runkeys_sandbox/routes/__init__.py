"""The stand-in's endpoints, one module per area of GitHub's REST API."""
