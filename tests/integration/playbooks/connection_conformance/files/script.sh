#!/bin/sh
# Run by the script module in the connection conformance suite (tests/integration/test_connection_conformance.py).
printf 'args:'
for arg in "$@"; do
    printf ' <%s>' "$arg"
done
printf '\n'
echo 'script-stderr' >&2
exit 0
