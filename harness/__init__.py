"""The tools around the application: embedded servers, the ``up`` runner and the fleet simulator.

Nothing a deployment runs imports this package; it imports the application, never the reverse.
"""
