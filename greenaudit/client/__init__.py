"""The client hook: measurement sources, spool and transport, and the run API."""
