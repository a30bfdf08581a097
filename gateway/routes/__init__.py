"""One module per concern; each exposes a factory that takes its dependencies."""
