"""Around the core commands: browse, the interactive session, policy, verify, demo, sample data."""
