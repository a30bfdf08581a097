"""The invoker: function registry, warm pools and scheduling, per-call limits,
logs and metering. The gateway talks to it through `Invoker` alone."""
