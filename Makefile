# Benchmarks print numbers; they assert nothing (see DESIGN.md, rules of the house).
.PHONY: bench
bench:
	@set -e; for script in bench/*.sh; do echo "== $$script"; bash "$$script"; done

# The phone SDK's Kotlin and Swift bindings (build outputs, never committed):
# target/sharecast-bindings/{kotlin,swift,lib}. See docs/mobile.md.
.PHONY: sdk-bindings
sdk-bindings:
	bash scripts/sdk-bindings.sh
