"""The GitHub App webhook service: keeps the lease ledger and retires keys on time. Thin."""
