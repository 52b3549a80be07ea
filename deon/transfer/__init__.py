"""Moving bytes: planning of up/down/pull, the transfer engine, digests, local state."""
