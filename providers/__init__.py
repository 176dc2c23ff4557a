"""The provider protocol and registry: one row per provider with everything provider-specific the sync calls."""
