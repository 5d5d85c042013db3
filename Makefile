# Benchmarks print numbers; they assert nothing (see DESIGN.md, rules of the house).
.PHONY: bench
bench:
	@set -e; for script in bench/*.sh; do echo "== $$script"; bash "$$script"; done
