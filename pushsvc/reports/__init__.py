"""The figures a department is assessed on: built from the ledger, and as a spreadsheet."""
