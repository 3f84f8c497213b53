"""Policies: publish, preview, explain, revise, repeal and lapse, with their rules; the message a
policy or its notice becomes. Functions take the services and plain values, never a request."""
