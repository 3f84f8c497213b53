"""The SMS providers pushsvc speaks to, one module per protocol, behind `base.SmsProvider`."""
