"""HTTP to the providers and nothing else: auth, paging, error mapping into the taxonomy of ``base``."""
