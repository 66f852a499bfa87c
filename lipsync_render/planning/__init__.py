"""The session plan: what a session really runs with (backend, device, precision, encoder, sizes), decided once."""
