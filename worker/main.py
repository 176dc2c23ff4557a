"""What a Dramatiq worker process runs: ``dramatiq worker.main`` (``rostersync worker`` passes its options on).

Dramatiq imports the module it is given and takes the global broker, so this one module sets the
broker up from the settings at import, with the actors of ``worker.actors`` installed on it; every
other module imports the actors without any such side effect.
"""

from __future__ import annotations

from settings import get_settings
from worker import actors as actors  # declares the actors that install() below moves onto the broker
from worker.broker import install, make_broker

broker = install(make_broker(get_settings()))
"""The broker this worker process serves (Redis in production; Dramatiq also finds it as the global one)."""
