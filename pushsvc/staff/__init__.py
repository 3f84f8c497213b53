"""People who sign in to the console: accounts, roles and rights, passwords, the second factor,
lock-out and server-side sessions."""
