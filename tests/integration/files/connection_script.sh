#!/bin/sh
# Run by the script module through the aws_ecs connection (tests/integration/test_connection_aws_ecs.py).
printf 'args:'
for arg in "$@"; do
    printf ' <%s>' "$arg"
done
printf '\n'
echo 'script-stderr' >&2
exit 0
