"""Small modules shared by the command service, the projectors and the query service."""
