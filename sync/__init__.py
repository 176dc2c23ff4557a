"""The provider-neutral sync cycle, told as its steps (lease, fetch, map, fenced write, sweep, release).

It names no provider: everything provider-specific comes through ``providers.registry``."""
