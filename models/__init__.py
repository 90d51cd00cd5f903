"""The pure core: domain types, the assessment and the recovery policy.

Nothing here does I/O, reads the environment or the clock; time is an argument.
"""
