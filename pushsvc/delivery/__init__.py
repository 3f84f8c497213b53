"""The road a message travels after it is stored: fan-out, the one send step every sender uses,
deliver jobs, digests, receipts, retries of failures and the sweeper."""
