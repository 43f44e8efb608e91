"""Customer service management: SLAs, SLSs, admission, authorization, accounting (core)."""
