"""Infernet delegated subscriptions: verified (EIP-712), scheduled, run on distinct nodes, delivered."""
