"""Local stand-ins for the services grantflow talks to, as real HTTP servers on 127.0.0.1.

- ``sandbox.hoop.HoopStandIn``: the hoop.dev gateway API grantflow uses (grants, reviews, sessions, users).
- ``sandbox._server.BackgroundServer``: runs any ASGI app on a daemon thread; the stand-ins share it.

Stand-ins are for tests and ``grantflow dev`` only; nothing in production imports them.
"""
