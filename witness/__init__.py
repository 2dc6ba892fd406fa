"""A C2SP tlog-witness: cosigns the checkpoints of the logs it knows, never two inconsistent trees.

``records.py`` keeps, per log, the latest checkpoint it cosigned (durably, refusing to start over a
damaged record), and the evidence of refused inconsistent checkpoints; ``service.py`` is the
add-checkpoint decision (pure but for the records); ``app.py`` the Falcon ASGI app;
``server.py`` the ``orchestrator witness init | serve`` commands.
"""
