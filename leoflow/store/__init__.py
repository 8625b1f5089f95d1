"""State behind one key/value port with Consul KV semantics; adapters: Consul (production), SQLite (embedded)."""
