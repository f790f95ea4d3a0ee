"""Operator and test tooling that runs the services from outside: a process launcher, a faulty
network proxy and the chaos run. No service imports it."""
