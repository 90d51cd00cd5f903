"""Routes: each module parses, calls a service, and lets the error handlers map exceptions."""
