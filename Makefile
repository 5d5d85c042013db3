# `make check` is what CI runs before the tests; `make test` is the README's
# test command. Benchmarks print numbers; they assert nothing (see the rules
# in docs/architecture.md).
.PHONY: check test bench chaos chaos-short soak soak-short fuzz fuzz-short

check:
	bash scripts/check.sh

test:
	bash scripts/test.sh

# The chaos suite (docs/reliability.md): phone and server in two network
# namespaces under loss, blackout, NAT rebinding and a slow uplink, and twenty
# phones through a kill -9 of the server. Needs root. `chaos-short` is the
# form scripts/test.sh (CI) runs.
chaos:
	cargo build --bin sharecast
	bash tests/chaos/run.sh --full

chaos-short:
	cargo build --bin sharecast
	bash tests/chaos/run.sh --short

# The soak (docs/reliability.md): 50 phones pushing in real time for an
# hour on loopback with viewers joining and leaving; RSS and descriptors
# sampled every 10 s. `soak-short` (10 phones, 60 s) is CI's form.
soak:
	cargo build --bin sharecast
	bash tests/chaos/soak.sh

soak-short:
	cargo build --bin sharecast
	bash tests/chaos/soak.sh --short

# The decoders under libFuzzer (docs/reliability.md, "Fuzzing"): `fuzz` runs
# each target for 10 million executions or one hour, whichever first;
# `fuzz-short` (what scripts/test.sh and so CI run) about 12 s each.
fuzz:
	bash scripts/fuzz.sh --full

fuzz-short:
	bash scripts/fuzz.sh --short

bench:
	@set -e; for script in bench/*.sh; do echo "== $$script"; bash "$$script"; done

# The phone SDK's Kotlin and Swift bindings (build outputs, never committed):
# target/sharecast-bindings/{kotlin,swift,lib}. See docs/mobile.md.
.PHONY: sdk-bindings
sdk-bindings:
	bash scripts/sdk-bindings.sh
