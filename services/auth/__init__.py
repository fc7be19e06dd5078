"""The auth service: users, passwords, API keys, JWT signing keys."""
