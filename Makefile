# `make check` is what CI runs before the tests; `make test` is the README's
# test command. Benchmarks print numbers; they assert nothing (see the rules
# in docs/architecture.md).
.PHONY: check test bench

check:
	bash scripts/check.sh

test:
	bash scripts/test.sh

bench:
	@set -e; for script in bench/*.sh; do echo "== $$script"; bash "$$script"; done

# The phone SDK's Kotlin and Swift bindings (build outputs, never committed):
# target/sharecast-bindings/{kotlin,swift,lib}. See docs/mobile.md.
.PHONY: sdk-bindings
sdk-bindings:
	bash scripts/sdk-bindings.sh
