"""Talking to Invoiced and Keap: one shared HTTP layer (`http`), its pacing and error classes, and a connector per API."""
