# The README's two commands are `make demo` and `make test`; .ci/run runs `make test`.
# The logic lives in tests/ci/ (bash scripts) so it can be run and read without make.

# Steps of `make test`; e.g. `make test STEPS="units integration"`.
STEPS ?= sanity units integration changelog
export STEPS

.PHONY: test demo bench venv sanity units integration changelog clean

test:
	tests/ci/run_tests

# `make demo PLAYBOOK=playbooks/aws_ecs_exec.yml` runs another example of playbooks/ the same way.
PLAYBOOK ?= playbooks/demo.yml
export PLAYBOOK

demo:
	tests/ci/demo

# Benchmarks print a table; on demand only (minutes), never part of `make test`.
bench:
	tests/ci/bench $(ARGS)

# Create or refresh .venv only.
venv:
	tests/ci/venv

sanity units integration changelog:
	tests/ci/run_tests $@

# Removes what this repository's targets create. ansible-test's own caches in ~/.ansible/test
# (sanity venvs, the get-pip stand-in) are shared with other checkouts and stay.
clean:
	rm -rf .venv .cache tests/output .pytest_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
