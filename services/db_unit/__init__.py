"""The db unit: RecordService, which keeps instruction records and the result ledger."""
