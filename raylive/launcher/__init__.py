"""What `raylive up` starts on one machine and how it finds, waits for and cleans up an instance.

`up` (the foreground process and its shutdown order), `ray_head` (a local Ray head in its own
session), `redis_server` (the embedded Redis) and `instance` (the data dir's lock and runtime
record: one instance per data dir, found while it starts, and what a killed one left cleaned up).
"""
