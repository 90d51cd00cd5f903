"""The ``autorecovery`` command line: an entrypoint beside ``api/`` and ``workers/``.

``main`` builds the parser and runs a command (migrate, prune, tick, api, agent, ...);
``tools`` adds the commands that run the tools around the product (``up``, ``sim``,
``agent-check``, which reach ``harness``); ``ops`` holds the operator commands over the HTTP API.
The application (``autorecovery``, ``models``) never imports this package.
"""
