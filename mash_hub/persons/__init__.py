"""The encrypted person store: source records, their encrypted field groups and blind indexes."""
