"""Brokers: one module per broker (memory, rabbitmq, redis)."""
