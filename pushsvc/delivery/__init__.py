"""The road a policy travels after it is stored: fan-out, delivery, and the sweeper."""
