#!/bin/sh
# Runs the container's command; SIGTERM reaches xaisearch directly (exec), so a worker finishes
# its current trial on `docker stop` (a second SIGTERM abandons and re-enqueues it).
set -e
exec "$@"
