"""Stand-ins for the roster providers, run locally over HTTPS.

They let the worker be tested end to end, including revocation, throttling and partial
responses, without a network, provider accounts or real pupils. The package stands for the
providers, so it imports nothing from the rest of the project.
"""
