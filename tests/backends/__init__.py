"""The warehouse backends: schema, publish protocol, serving, and the contract both share."""
