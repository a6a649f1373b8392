"""Security: listeners and their protocols, TLS, SASL (PLAIN, SCRAM) and the per-connection
session that carries the authenticated principal. Pure parts here; sockets stay in server/."""
