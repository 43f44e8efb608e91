"""The emulation harness and demo scenarios: a controller process and Mininet networks on
Open vSwitch's userspace datapath, for `make demo`, the integration tests and benchmarks.
Never imported by the installed controller (`controller` imports nothing of Mininet)."""
