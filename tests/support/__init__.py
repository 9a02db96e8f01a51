"""Test infrastructure: private brokers, a fault-injecting TCP proxy and a delivery ledger."""
