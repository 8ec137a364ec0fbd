"""Pure domain model of the write side: no I/O, no framework (see command_service/README.md)."""
